"""The ctypes structs of python/vtok/_lib.py against the C compiler's layout
of include/vtok.h: every struct's size and every field's offset."""
import os
import shutil
import subprocess

import pytest

from conftest import REPO


def test_struct_layout_matches_c(vtok, tmp_path):
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to check the struct layouts with")
    import ctypes
    S = vtok._lib.STRUCTS
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "vtok.h"',
             'int main(void) {']
    for cname, cls in S.items():
        lines.append('printf("%s %%zu\\n", sizeof(%s));' % (cname, cname))
        for f in cls._fields_:
            lines.append('printf("%s.%s %%zu\\n", offsetof(%s, %s));'
                         % (cname, f[0], cname, f[0]))
    lines += ["return 0;", "}"]
    (tmp_path / "abi.c").write_text("\n".join(lines) + "\n")
    # vtok_version.h is generated into the build tree; its macros do not
    # touch any layout, so a stand-in does
    (tmp_path / "vtok_version.h").write_text('#define VTOK_VERSION_STRING "abi"\n')
    exe = tmp_path / "abi"
    subprocess.run([cc, "-std=c11", "-I", os.path.join(REPO, "include"), "-I", str(tmp_path),
                    str(tmp_path / "abi.c"), "-o", str(exe)], check=True)
    want = dict(l.split() for l in subprocess.run([str(exe)], capture_output=True, text=True,
                                                  check=True).stdout.splitlines())
    got = {}
    for cname, cls in S.items():
        got[cname] = str(ctypes.sizeof(cls))
        for f in cls._fields_:
            got["%s.%s" % (cname, f[0])] = str(getattr(cls, f[0]).offset)
    assert len(want) > 100
    assert got == want


def test_params_init_writes_size_and_defaults(vtok):
    import ctypes
    L = vtok._lib
    gp = L.init(L.GenParams, "vtok_gen_params_init")
    assert gp.size == ctypes.sizeof(L.GenParams)
    assert gp.max_tokens == 256 and gp.greedy == 1 and gp.top_p == 1.0
    mp = L.init(L.ModelParams, "vtok_model_params_init")
    assert mp.size == ctypes.sizeof(L.ModelParams) and mp.use_mmap == 1


def test_readme_session_runs(vtok, monkeypatch, capsys):
    """The notebook-style session of python/README.md runs as written and
    prints what its comments say."""
    import re
    with open(os.path.join(REPO, "python", "README.md")) as f:
        code = re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)
    monkeypatch.chdir(REPO)
    ns = {}
    exec(compile(code, "python/README.md", "exec"), ns)
    out = capsys.readouterr().out
    assert "triangle" in out and "not a model folder" in out and "aborted" in out
    assert ns["tokens"].shape == (1, 64, 128)
