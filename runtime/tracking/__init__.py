"""Mask trackers: a box (or a mask) in, a mask per head frame out. See `base.Tracker`."""
