"""The PVC-level import controller: any PVC carrying import-source annotations gets an importer pod;
the pod's state is written back to the PVC as annotations that the DataVolume controller reads."""
