"""Generated OpAMP protobuf modules (opamp_pb2, anyvalue_pb2): see ../proto/SOURCE.md. Do not edit."""
