"""Face engines: leaves that know images and vectors, and nothing of the database.

``base`` declares everything an engine can do; ``local`` (dlib, offline) and ``rekognition``
(AWS) implement it. The services build them (faces.services.engines) and own every rule and
record around them.
"""
