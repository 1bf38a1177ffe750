"""What training and inference both stand on: the device, the numeric precision, the machine's cores
and memory, and files written atomically. Imports nothing of voxseg above `errors` and `accel`."""
