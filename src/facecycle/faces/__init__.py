"""Face pipeline: detection + landmarks (`landmarks`), alignment (`align`), masks (`masks`),
paste-back (`paste`, `paste_masks`), dataset preparation (`prepare`, `split`), whole-photo /
video translation (`faceoff`), video face tracks (`tracking`), the choice of the face to
replace (`selection`) and flicker reduction (`temporal`).

Submodules are imported explicitly (`from facecycle.faces.landmarks import detect_faces`)
so that importing `facecycle.faces` stays free of mediapipe / OpenCV / PyAV.
"""
