"""GPU memory behind one small interface, with cuda-python and pycuda adapters."""
