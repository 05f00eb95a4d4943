"""Tests of the embedded mode's local volumes: pools on real loop devices, the provisioner and reclaimer."""
