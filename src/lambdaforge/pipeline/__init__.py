"""The retraining pipeline's steps: trigger, quantize, promote (the handlers in functions/ call these)."""
