"""Decode a plugin config Any written by edgefn-proto and compare it with the source JSON.

Usage: decode_any.py ANY_FILE JSON_FILE WRAPPING [decode-only]

WRAPPING is "struct" or "typed-struct". The script uses only Python's protobuf package, so it
checks the Rust encoding against an independent implementation: it unpacks the Any, converts
the Struct back to JSON, and compares the bytes with protobuf's own deterministic encoding of
the same JSON. "decode-only" skips the byte comparison, for configs whose bytes legitimately
differ: Python's upb encoder orders a map key after the longer keys it prefixes ("ab" before
"a"), and prost leaves out an empty key. It prints nothing and exits 0 on success, and exits 1
with the differences otherwise.
"""

import json
import sys

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format
from google.protobuf import message_factory, struct_pb2

STRUCT_TYPE_URL = "type.googleapis.com/google.protobuf.Struct"
TYPED_STRUCT_TYPE_URL = "type.googleapis.com/xds.type.v3.TypedStruct"


def typed_struct_class():
    """Build xds.type.v3.TypedStruct at run time, as declared in xds/type/v3/typed_struct.proto."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="xds/type/v3/typed_struct.proto",
        package="xds.type.v3",
        syntax="proto3",
        dependency=["google/protobuf/struct.proto"],
    )
    message = file_proto.message_type.add(name="TypedStruct")
    message.field.add(
        name="type_url",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    message.field.add(
        name="value",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".google.protobuf.Struct",
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(file_proto.SerializeToString())
    descriptor = pool.FindMessageTypeByName("xds.type.v3.TypedStruct")
    return message_factory.GetMessageClass(descriptor)


def main():
    any_path, json_path, wrapping = sys.argv[1:4]
    compare_bytes = sys.argv[4:] != ["decode-only"]
    with open(any_path, "rb") as any_file:
        any_bytes = any_file.read()
    with open(json_path, encoding="utf-8") as json_file:
        expected = json.load(json_file)

    failures = []
    any_message = any_pb2.Any.FromString(any_bytes)
    expected_struct = struct_pb2.Struct()
    json_format.ParseDict(expected, expected_struct)

    if wrapping == "struct":
        expected_type_url = STRUCT_TYPE_URL
        decoded = struct_pb2.Struct()
        if not any_message.Unpack(decoded):
            failures.append(f"Any does not unpack as Struct: type_url {any_message.type_url!r}")
        expected_value = expected_struct.SerializeToString(deterministic=True)
    elif wrapping == "typed-struct":
        expected_type_url = TYPED_STRUCT_TYPE_URL
        typed_struct = typed_struct_class()
        outer = typed_struct.FromString(any_message.value)
        if outer.type_url != "":
            failures.append(f"TypedStruct.type_url is {outer.type_url!r}, expected ''")
        if not outer.HasField("value"):
            failures.append("TypedStruct.value is not set")
        decoded = outer.value
        expected_outer = typed_struct(type_url="")
        expected_outer.value.CopyFrom(expected_struct)
        expected_value = expected_outer.SerializeToString(deterministic=True)
    else:
        sys.exit(f"unknown wrapping {wrapping!r}, expected struct or typed-struct")

    if any_message.type_url != expected_type_url:
        failures.append(f"type_url is {any_message.type_url!r}, expected {expected_type_url!r}")

    decoded_json = json_format.MessageToDict(decoded)
    if decoded_json != expected:
        failures.append(
            "decoded JSON differs:\n  decoded:  "
            + json.dumps(decoded_json, sort_keys=True)
            + "\n  expected: "
            + json.dumps(expected, sort_keys=True)
        )

    if compare_bytes and any_message.value != expected_value:
        failures.append(
            f"Any.value bytes differ from protobuf's deterministic encoding:\n"
            f"  edgefn:   {any_message.value.hex()}\n  protobuf: {expected_value.hex()}"
        )

    expected_any = any_pb2.Any(type_url=expected_type_url, value=expected_value)
    if compare_bytes and any_bytes != expected_any.SerializeToString(deterministic=True):
        failures.append("Any bytes differ from protobuf's deterministic encoding")

    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
