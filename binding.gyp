{
  "targets": [
    {
      "target_name": "berth_sys",
      "sources": ["native/berth_sys.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "defines": ["_GNU_SOURCE"]
    }
  ]
}
