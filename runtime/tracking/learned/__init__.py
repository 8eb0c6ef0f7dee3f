"""Learned segmentation and tracking (Cutie + SAM) running from exported graphs, torch-free."""
