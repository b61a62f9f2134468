"""Frame sources: live cameras with the newest-frame grabber, and stills, videos and folders
for replay."""
