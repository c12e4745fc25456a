/* The benchmark's crashing workload: stamps its start, lives briefly, stamps
 * its exit and fails. Stamps are CLOCK_MONOTONIC nanoseconds, comparable
 * across processes, appended to the file named by STAMP_FILE. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void stamp(int fd, char kind) {
    struct timespec now;
    char line[64];
    clock_gettime(CLOCK_MONOTONIC, &now);
    int n = snprintf(line, sizeof line, "%c %lld\n", kind,
                     (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    if (write(fd, line, (size_t)n) != n) _exit(3);
}

int main(void) {
    const char *path = getenv("STAMP_FILE");
    const char *life = getenv("STAMP_LIFE_MS");
    if (!path) return 2;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return 2;
    stamp(fd, 'S');
    struct timespec pause = {0, (life ? atol(life) : 20) * 1000000L};
    nanosleep(&pause, NULL);
    stamp(fd, 'E');
    return 1;
}
