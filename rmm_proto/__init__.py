"""Code generated from proto/ by scripts/gen_proto.sh: never edit by hand."""
