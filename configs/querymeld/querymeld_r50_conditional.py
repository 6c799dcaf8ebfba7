# Table 2 query strategy: conditional queries only (400), as Mask DINO's two-stage decoder.
# Inherits the query-meld config and changes only the query counts.
_base_ = './querymeld_r50_meld.py'

model = dict(head=dict(num_learnable_queries=0, num_conditional_queries=400))
