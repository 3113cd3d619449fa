"""INT8 calibration on a workstation without a GPU: readers, streaming statistics, ranges."""
