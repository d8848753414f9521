"""Writes THIRD-PARTY.md for the release archive (scripts/release.sh).

Every crate compiled into `pipeline` (its normal dependencies, recursively,
as `cargo metadata` resolves them for x86-64 Linux) with its version and
licence expression, then the licence texts of the C libraries built from
source and linked in statically (HDF5, cfitsio, libjpeg-turbo, SQLite).
"""

import json
import pathlib
import subprocess
import sys

# Crate that carries a C library's source -> (library, licence files under it).
C_LIBRARIES = {
    "hdf5-metno-src": ("HDF5", ["ext/hdf5/LICENSE", "ext/hdf5/COPYING"]),
    "fitsio-sys": ("cfitsio", ["ext/cfitsio/License.txt"]),
    "turbojpeg-sys": ("libjpeg-turbo", ["libjpeg-turbo/LICENSE.md", "libjpeg-turbo/README.ijg"]),
    "libsqlite3-sys": ("SQLite (public domain)", ["LICENSE"]),
}


def main() -> int:
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked",
             "--filter-platform", "x86_64-unknown-linux-gnu"],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(p["id"] for p in meta["packages"] if p["name"] == "sciflow-pipeline")

    # Normal (not dev- or build-) dependencies reachable from the binary's crate.
    seen, todo = set(), [root]
    while todo:
        node = nodes[todo.pop()]
        for dep in node["deps"]:
            if any(k["kind"] is None for k in dep["dep_kinds"]) and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    crates = sorted((packages[i] for i in seen), key=lambda p: (p["name"], p["version"]))

    out = sys.stdout
    out.write("# Third-party software in this archive\n\n")
    out.write("`libexec/pipeline` is sciflow (MIT OR Apache-2.0, LICENSE-MIT and "
              "LICENSE-APACHE) compiled together with the crates below. libtorch, MPI, "
              "glibc and the C++ runtime are not in the archive: they are the machine's.\n\n")
    out.write("| crate | version | licence |\n|---|---|---|\n")
    for p in crates:
        if p["source"] is None:  # our own crates
            continue
        out.write(f"| {p['name']} | {p['version']} | {p.get('license') or 'see its repository'} |\n")
    out.write("\n## C libraries built from source and linked in\n")
    for p in crates:
        if p["name"] not in C_LIBRARIES:
            continue
        library, files = C_LIBRARIES[p["name"]]
        base = pathlib.Path(p["manifest_path"]).parent
        for rel in files:
            path = base / rel
            if path.is_file():
                out.write(f"\n### {library} (from {p['name']} {p['version']}, {rel})\n\n```text\n")
                out.write(path.read_text(errors="replace").rstrip() + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
