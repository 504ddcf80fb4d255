"""Tabular multi-task prediction: MPT-Rec's own setting (Bai et al.), where a user is a row of fields
and every task is a yes/no label; the paper's check is new-task AUC at a fraction of the parameters."""
