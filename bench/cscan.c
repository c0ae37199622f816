/* cscan.c -- the plain-C reference figures for bench/harness.py.
 *
 *   cscan scan FILE RUNS    read() FILE in 1 MiB pieces and count "\nFrom "
 *                           with memmem, RUNS times; one line per run:
 *                           "scan <messages> <bytes> <seconds>"
 *   cscan copy SRC DST      copy SRC to a new DST (copy_file_range), fsync:
 *                           "copy <bytes> <seconds>"
 *   cscan keep SRC DST      write every second message of the mbox SRC
 *                           (the 1st, 3rd, ...) contiguously to a new DST,
 *                           reading it with pread through a 1 MiB buffer,
 *                           then fsync: "keep <messages> <bytes> <seconds>"
 *   cscan nodelay PROG ARG...  TCP_NODELAY on fd 0, then exec PROG: a
 *                           server run from inetd that writes a reply in
 *                           several writes (popa3d: "+OK", the message,
 *                           ".") without it waits for the client's delayed
 *                           ACK (40 ms) on each; as systemd's NoDelay=yes
 *
 * A message starts at offset 0 and after each "\n" that is followed by
 * "From " (the corpus escapes body lines as ">From ", so this is exact for
 * it).  The timings are taken inside the process (CLOCK_MONOTONIC), so they
 * leave out exec and page-cache warm-up is the caller's business (best of
 * several runs).  Only `keep` is timed from open(DST) to the end of fsync;
 * finding the message boundaries is not timed.
 *
 * Built by the harness with `cc -O2 -o bench/out/cscan bench/cscan.c`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PIECE (1 << 20)
#define PATTERN "\nFrom "
#define PATTERN_LEN 6

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
    fprintf(stderr, "cscan: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

/* Scan fd from its current offset; call found(offset of "From ") for each
 * message start after the first; return the bytes read. */
static int64_t scan_fd(int fd, const char *path, char *buf,
                       void (*found)(int64_t, void *), void *arg)
{
    int64_t offset = 0;         /* file offset of buf[0] */
    size_t carry = 0;           /* bytes kept from the previous piece */
    for (;;) {
        ssize_t n = read(fd, buf + carry, PIECE);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("read", path);
        }
        if (n == 0)
            break;
        size_t len = carry + (size_t)n;
        const char *p = buf, *end = buf + len;
        while ((p = memmem(p, (size_t)(end - p), PATTERN, PATTERN_LEN)) != NULL) {
            if (found)
                found(offset + (p - buf) + 1, arg);
            p += 1;
        }
        /* A match needs 6 bytes, so keeping 5 never finds one twice. */
        carry = len < PATTERN_LEN - 1 ? len : PATTERN_LEN - 1;
        memmove(buf, end - carry, carry);
        offset += (int64_t)(len - carry);
    }
    return offset + (int64_t)carry;
}

static void count_one(int64_t at, void *arg)
{
    (void)at;
    ++*(int64_t *)arg;
}

static int do_scan(const char *path, int runs)
{
    char *buf = malloc(PIECE + PATTERN_LEN);
    if (!buf)
        return 1;
    for (int run = 0; run < runs; run++) {
        double t0 = now();
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            die("open", path);
        int64_t starts = 0;
        int64_t bytes = scan_fd(fd, path, buf, count_one, &starts);
        close(fd);
        double t1 = now();
        printf("scan %lld %lld %.6f\n", (long long)(bytes ? starts + 1 : 0),
               (long long)bytes, t1 - t0);
        fflush(stdout);
    }
    free(buf);
    return 0;
}

static int do_copy(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY);
    if (in < 0)
        die("open", src);
    double t0 = now();
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0)
        die("open", dst);
    int64_t total = 0;
    for (;;) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("copy_file_range", dst);
        }
        if (n == 0)
            break;
        total += n;
    }
    if (fsync(out) < 0)
        die("fsync", dst);
    close(out);
    double t1 = now();
    close(in);
    printf("copy %lld %.6f\n", (long long)total, t1 - t0);
    return 0;
}

struct starts {
    int64_t *at;
    size_t count, size;
};

static void add_start(int64_t at, void *arg)
{
    struct starts *s = arg;
    if (s->count == s->size) {
        s->size = s->size ? 2 * s->size : 4096;
        s->at = realloc(s->at, s->size * sizeof *s->at);
        if (!s->at) {
            fprintf(stderr, "cscan: out of memory\n");
            exit(1);
        }
    }
    s->at[s->count++] = at;
}

static void write_all(int fd, const char *p, size_t n, const char *path)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("write", path);
        }
        p += w;
        n -= (size_t)w;
    }
}

static int do_keep(const char *src, const char *dst)
{
    char *buf = malloc(PIECE + PATTERN_LEN);
    if (!buf)
        return 1;
    int in = open(src, O_RDONLY);
    if (in < 0)
        die("open", src);
    struct starts s = {0};
    add_start(0, &s);
    int64_t size = scan_fd(in, src, buf, add_start, &s);
    add_start(size, &s);                        /* the end of the last message */

    double t0 = now();
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0)
        die("open", dst);
    size_t used = 0;
    int64_t total = 0, kept = 0;
    for (size_t i = 0; i + 1 < s.count; i += 2) {
        int64_t pos = s.at[i], end = s.at[i + 1];
        kept++;
        while (pos < end) {
            if (used == PIECE) {
                write_all(out, buf, used, dst);
                used = 0;
            }
            size_t want = (size_t)(end - pos) < PIECE - used ? (size_t)(end - pos) : PIECE - used;
            ssize_t n = pread(in, buf + used, want, pos);
            if (n <= 0) {
                if (n < 0 && errno == EINTR)
                    continue;
                die("pread", src);
            }
            used += (size_t)n;
            pos += n;
            total += n;
        }
    }
    write_all(out, buf, used, dst);
    if (fsync(out) < 0)
        die("fsync", dst);
    close(out);
    double t1 = now();
    close(in);
    printf("keep %lld %lld %.6f\n", (long long)kept, (long long)total, t1 - t0);
    free(s.at);
    free(buf);
    return 0;
}

static int do_nodelay(char **argv)
{
    int one = 1;
    if (setsockopt(0, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        perror("cscan nodelay: setsockopt");
    execv(argv[0], argv);
    perror(argv[0]);
    return 127;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "nodelay") == 0)
        return do_nodelay(argv + 2);
    if (argc == 4 && strcmp(argv[1], "scan") == 0)
        return do_scan(argv[2], atoi(argv[3]) > 0 ? atoi(argv[3]) : 1);
    if (argc == 4 && strcmp(argv[1], "copy") == 0)
        return do_copy(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "keep") == 0)
        return do_keep(argv[2], argv[3]);
    fprintf(stderr, "usage: cscan scan FILE RUNS | copy SRC DST | keep SRC DST"
                    " | nodelay PROG ARG...\n");
    return 2;
}
