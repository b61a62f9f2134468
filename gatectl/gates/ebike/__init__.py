"""The elevator e-bike gate: detections in the car region, N-of-M confirmation, the hold."""
