"""What the CLI parity scripts share: one check line per assertion, running
`vtok`, and the bad-input rule (a failing command prints one clear line,
exits 1..127, and no sanitizer report)."""
import subprocess

SANITIZER = ("AddressSanitizer", "LeakSanitizer", "runtime error")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(vtok, args, timeout=600):
    p = subprocess.run([vtok] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def run_ok(vtok, name, args):
    """(ok, stdout) of a command that must succeed."""
    rc, out, err = run(vtok, args)
    ok = rc == 0 and not any(s in err for s in SANITIZER)
    check(ok, "%s: exit %s %s" % (name, rc, "" if ok else err.strip()[-600:]))
    return ok, out


def expect_error(vtok, name, args, keywords):
    rc, out, err = run(vtok, args)
    lines = [l for l in err.splitlines() if l.strip()]
    ok = (0 < rc < 128 and len(lines) == 1 and all(k.lower() in lines[0].lower() for k in keywords)
          and not any(s in err for s in SANITIZER))
    check(ok, "error %-28s exit %s: %s" % (name, rc, " | ".join(lines)[:300]))
