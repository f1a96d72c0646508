{
  "targets": [
    {
      "target_name": "berth_sys",
      "sources": [
        "native/berth_sys.c",
        "native/sys/args.c",
        "native/sys/errors.c",
        "native/sys/files.c",
        "native/sys/malloc.c",
        "native/sys/mounts.c",
        "native/sys/namespaces.c",
        "native/sys/pool.c",
        "native/sys/probes.c",
        "native/sys/process.c",
        "native/sys/spawn.c",
        "native/sys/xattr.c"
      ],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "defines": ["_GNU_SOURCE"]
    }
  ]
}
