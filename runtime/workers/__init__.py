"""Worker threads beside the control loop: policy inference, tracking, camera capture, telemetry."""
