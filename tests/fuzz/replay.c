/* A main() for a fuzz harness without libFuzzer: runs LLVMFuzzerTestOneInput
 * once on each file named, or on each file in each folder named, and says how
 * many it ran. A crash, a sanitizer report or an abort fails it. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs the harness on one file; 0 when it could not be read. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t size = 0, capacity = 4096;
    uint8_t *data = malloc(capacity);
    for (size_t got; data && (got = fread(data + size, 1, capacity - size, f)) > 0;) {
        size += got;
        uint8_t *bigger = size == capacity ? realloc(data, capacity *= 2) : data;
        if (!bigger) free(data);
        data = bigger;
    }
    fclose(f);
    if (!data) return 0;
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 1;
}

int main(int argc, char **argv)
{
    int ran = 0, failed = 0;
    for (int a = 1; a < argc; a++) {
        struct stat info;
        DIR *folder = stat(argv[a], &info) == 0 && S_ISDIR(info.st_mode) ? opendir(argv[a]) : NULL;
        if (!folder) {
            const int ok = replay_file(argv[a]);
            ran += ok, failed += !ok;
            if (!ok) fprintf(stderr, "replay: cannot read %s\n", argv[a]);
            continue;
        }
        for (struct dirent *entry; (entry = readdir(folder));) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], entry->d_name);
            if (entry->d_name[0] == '.' || stat(path, &info) != 0 || !S_ISREG(info.st_mode)) continue;
            const int ok = replay_file(path);
            ran += ok, failed += !ok;
            if (!ok) fprintf(stderr, "replay: cannot read %s\n", path);
        }
        closedir(folder);
    }
    printf("replay: %d inputs ran, %d unreadable\n", ran, failed);
    return failed || ran == 0;
}
