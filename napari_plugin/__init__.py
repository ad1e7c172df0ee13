"""napari plugin of mixfuse-med: open MRI and PET/SPECT, fuse them with MixFuse, export the result.

Contributions (``napari.yaml``): a reader for NIfTI files and DICOM series
folders (``_reader``), synthetic MRI + PET and MRI + SPECT sample studies
(``_sample_data``), the *MixFuse fusion* dock widget (``_widget``) and NIfTI
writers (``_writer``).  Every step calls ``mixfuse_med``; ``_layers`` holds
the one MetaTensor <-> layer conversion they share.  Nothing heavy is
imported here: napari imports each module when its command is first used.
"""
