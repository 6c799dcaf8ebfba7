# Table 2 query strategy: learnable queries only (400), as X-Decoder.
# Inherits the query-meld config and changes only the query counts.
_base_ = './querymeld_r50_meld.py'

model = dict(head=dict(num_learnable_queries=400, num_conditional_queries=0))
