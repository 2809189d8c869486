"""Example handlers for `worker-node process` that need nothing beyond OpenCV and NumPy:

- ``framebus.worker_node.handlers.motion:MotionDetector``: frame differencing, moving regions boxed in green;
- ``framebus.worker_node.handlers.faces:FaceDetector``: OpenCV's frontal-face Haar cascade, faces boxed in orange.
"""
