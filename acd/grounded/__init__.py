"""The grounded backend's engine: captions written from a media item's grounding (see acd/grounding.py).

phrasing.py loads the phrasing data (prompts/grounded/*.yaml); facts.py turns a grounding dict into
word-ready facts; fit.py fits sentences to a length constraint; compose.py writes instructions and
chosen captions per instruction type; reject.py writes rejected captions per strategy.
"""
