"""ACM (AnyCapModel): frozen modality encoder -> MLP projector -> causal LM that refines a caption.

model.py (the network), tokenizer.py (prompt text + a BPE tokenizer trained on the dataset's captions),
data.py (WebDataset streaming over the built shards), train.py (loop, checkpoints, DDP), infer.py (refine).
"""
