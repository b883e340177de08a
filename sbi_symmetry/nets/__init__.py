"""Networks: convolutional encoders, projector heads and emulators."""
