"""Face detection as a Ray Data stage: the same answers as ``blazeconv detect``, on one machine or a cluster.

A pipeline (``pip install 'blazeconv[ray]'``)::

    import ray
    from blazeconv.ray import DetectFaces, map_batches_options

    ds = ray.data.read_binary_files("photos/", include_paths=True)            # columns: bytes, path
    ds = ds.map_batches(DetectFaces, fn_constructor_kwargs={"model": "short_range"}, **map_batches_options())
    ds.write_parquet("faces/")                                                 # one row per image

``DetectFaces`` loads the model once per actor and takes batches holding one of these columns (the first present wins):

- ``image``: uint8 ``(H, W, 3)`` RGB arrays, as ``ray.data.read_images(..., mode="RGB", include_paths=True)`` gives.
  Ray decodes those files itself (in its read tasks, without EXIF orientation, and one corrupt file fails the read);
- ``bytes``: the encoded files, as ``ray.data.read_binary_files(..., include_paths=True)`` gives, decoded here with
  ``detect``'s own loader (EXIF orientation applied): the form that gives exactly ``detect``'s answers;
- ``path``: file paths (or ``scheme://`` URIs that ``pyarrow.fs`` opens: ``s3://``, ``gs://``, ``file://``), read here.

Each output row (``output_schema``): ``path`` (string; null when the batch had no path column), ``width`` and
``height`` (int64 pixels, of the upright image), ``detections`` and ``error`` (string: why this image could not be
read, as ``detect`` words it; null when it was). A row that cannot be decoded (corrupt bytes, a missing file) becomes
a row with ``error`` set and null ``width``, ``height`` and ``detections``; it never fails the job. Other input
columns (an id, a label) are carried through unchanged.

``detections`` is, by default, a JSON string: the list of ``detect --json`` entries (``Detection.to_dict()``:
``{"score", "box": [xmin, ymin, xmax, ymax], "keypoints": [[x, y] x 6]}``, 0..1 of the image). A string survives
every sink bit for bit: ``write_json`` renders float columns with pandas' ``to_json``, which keeps 10 significant
digits (measured: 0.12345678901234568 comes back as 0.123456789), while the string holds Python's shortest exact
repr. ``nested=True`` gives a typed Arrow column instead (list of struct ``score: double, box: list<double>,
keypoints: list<list<double>>``) for Parquet readers that query into it; it is exact through ``write_parquet`` but
not through ``write_json``.

One module per part: ``cluster`` (connecting, sizing), ``actor`` (``DetectFaces``), ``jobs`` (the runs that
``detect --ray`` makes).
"""

from .actor import INPUT_COLUMNS, DetectFaces, output_schema
from .cluster import LOCAL, connected, map_batches_options, require_ray
from .jobs import detect_files, detect_paths, stream_files, stream_videos

__all__ = ["INPUT_COLUMNS", "LOCAL", "DetectFaces", "connected", "detect_files", "detect_paths", "map_batches_options",
           "output_schema", "require_ray", "stream_files", "stream_videos"]
