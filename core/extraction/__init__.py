"""The batched bulk extraction path (:meth:`core.feature_extraction.FeatureExtractor.extract`
on a dataset that serves JPEG bytes, ``GulpClipDataset.jpegs``).

Four stages, each overlapped with the next:

1. reading (:func:`core.frame_reader.read_batches` with ``read="jpegs"``): worker processes
   (or a thread) read the clips' stored JPEG records, ~44 KB a frame, not 350 KB decoded;
2. batching (:mod:`.batching`): records repacked into batches of a fixed frame count that
   span clip boundaries, each row of a batch mapped back to its clip;
3. decoding + encoding (:mod:`.stages`): on a CPU (or CUDA without torchvision), threads
   decode the next batch with the dataset's own decoder while this one is encoded; on CUDA
   with torchvision, nvJPEG decodes a whole batch on the GPU, preprocessing and the bf16
   forward pass run there too, and the features come back through pinned memory while the
   next batch is launched;
4. writing (:mod:`.writer`): finished clips go through ``FeatureStore.write`` (atomic
   temp-then-rename) on a writer thread behind a bounded queue.
"""
