"""Drives a command on a pseudo-terminal as a person at a keyboard would.

usage: drive_pty.py ROWS COLS STEPS_JSON -- CMD...
STEPS: [["expect", TEXT], ["send", TEXT], ["resize", ROWS, COLS], ...]
Everything the command printed goes to stdout; the exit status is the
command's (or 99 when an expected text did not come within 30 s).
"""
import fcntl, json, os, pty, select, struct, sys, termios, time

rows, cols, steps = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
argv = sys.argv[sys.argv.index("--") + 1:]

def winsize(fd, r, c):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", r, c, 0, 0))

pid, fd = pty.fork()
if pid == 0:
    winsize(0, rows, cols)
    os.execvp(argv[0], argv)

seen = b""
def read_some(timeout):
    global seen
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return False
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        return None
    if not chunk:
        return None
    seen += chunk
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    return True

cursor = 0
for step in steps:
    if step[0] == "expect":
        want = step[1].encode()
        deadline = time.time() + 30
        while want not in seen[cursor:]:
            if time.time() > deadline or read_some(0.2) is None:
                sys.stdout.write("\n[drive_pty.py] did not see %r\n" % step[1])
                os.kill(pid, 9)
                sys.exit(99)
        cursor = seen.index(want, cursor) + len(want)
    elif step[0] == "send":
        os.write(fd, step[1].encode())
    elif step[0] == "resize":
        # The kernel tells the terminal's foreground process group (SIGWINCH).
        winsize(fd, step[1], step[2])
while read_some(5) is not None:
    pass
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
