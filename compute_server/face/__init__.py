"""Portrait and video-frame preprocessing: decode, detect, crop, matte, landmarks."""
