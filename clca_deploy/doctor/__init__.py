"""`clca-deploy doctor`: what this machine can run. It sits above the stages it probes; `system` below
holds the machine facts (GPU, Jetson) and each runtime's module its own probe."""
