"""Face pipeline: detection + landmarks (`landmarks`), alignment (`align`), masks (`masks`),
paste-back (`paste`), dataset preparation (`prepare`, `split`) and whole-photo / video
translation (`faceoff`).

Submodules are imported explicitly (`from facecycle.faces.landmarks import detect_faces`)
so that importing `facecycle.faces` stays free of mediapipe / OpenCV / PyAV.
"""
