"""Frame sources: live cameras with the newest-frame grabber, and stills/videos/folders for replay."""
