"""`facecycle faceoff`: two videos (or photo folders) in, two face-swapped videos and a report out.

Stages, each in its own folder under the output directory and each skipped when its inputs
and settings are unchanged (`stages.Stage`): extract/align (`data`), held-out split
(`data`), training (`train`), translation with tracking, reference selection and paste-back
(`videos`), and the report page (`report`). `run.run_faceoff` runs them in order.
"""
