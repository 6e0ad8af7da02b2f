/* Whole-file reads and crash-safe whole-file writes (POSIX). */
#define _POSIX_C_SOURCE 200809L
#include "io/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

static sbn_status io_error(const char *what, const char *path)
{
    return sbn_fail(SBN_ERR_IO, "%s: %s: %s", path, what, strerror(errno));
}

/* The folder part of path ("." when it has none), in a malloc'd string. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    char *folder = malloc((size_t)(slash - path) + 1);
    if (folder) {
        memcpy(folder, path, (size_t)(slash - path));
        folder[slash - path] = '\0';
    }
    return folder;
}

sbn_status sbn_file_sync_folder(const char *path)
{
    char *folder = folder_of(path);
    if (!folder) return sbn_fail(SBN_ERR_NOMEM, "no memory for a path");
    const int fd = open(folder, O_RDONLY | O_DIRECTORY);
    sbn_status st = SBN_OK;
    if (fd < 0 || fsync(fd) != 0) st = io_error("cannot sync the folder", folder);
    if (fd >= 0) close(fd);
    free(folder);
    return st;
}

static int write_fully(int fd, const unsigned char *bytes, size_t size)
{
    while (size > 0) {
        const ssize_t written = write(fd, bytes, size);
        if (written < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        bytes += written;
        size -= (size_t)written;
    }
    return 0;
}

sbn_status sbn_file_write_atomic(const char *path, const void *bytes, size_t size)
{
    if (!path || (!bytes && size)) return sbn_fail(SBN_ERR_ARG, "path or bytes is NULL");
    const size_t length = strlen(path);
    char *temporary = malloc(length + 16);
    if (!temporary) return sbn_fail(SBN_ERR_NOMEM, "no memory for a path");
    memcpy(temporary, path, length);
    memcpy(temporary + length, ".tmp-XXXXXX", 12);
    const int fd = mkstemp(temporary);
    if (fd < 0) {
        sbn_status st = io_error("cannot create a temporary file beside it", path);
        free(temporary);
        return st;
    }
    sbn_status st = SBN_OK;
    if (fchmod(fd, 0644) != 0 || write_fully(fd, bytes, size) != 0)
        st = io_error("cannot write", temporary);
    else if (fsync(fd) != 0)
        st = io_error("cannot sync", temporary);
    if (close(fd) != 0 && st == SBN_OK) st = io_error("cannot close", temporary);
    if (st == SBN_OK && rename(temporary, path) != 0) st = io_error("cannot rename the temporary file over it", path);
    if (st != SBN_OK) unlink(temporary);
    free(temporary);
    return st == SBN_OK ? sbn_file_sync_folder(path) : st;
}

sbn_status sbn_file_read_all(const char *path, size_t max_bytes, unsigned char **bytes, size_t *size)
{
    *bytes = NULL;
    *size = 0;
    FILE *file = fopen(path, "rb");
    if (!file) return io_error("cannot open", path);
    struct stat info;
    if (fstat(fileno(file), &info) != 0) {
        sbn_status st = io_error("cannot stat", path);
        fclose(file);
        return st;
    }
    if (!S_ISREG(info.st_mode)) {
        fclose(file);
        return sbn_fail(SBN_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)info.st_size > (uint64_t)max_bytes) {
        fclose(file);
        return sbn_fail(SBN_ERR_FORMAT, "%s: %lld bytes, more than the %zu this reader accepts", path,
                        (long long)info.st_size, max_bytes);
    }
    unsigned char *buffer = malloc((size_t)info.st_size + 1);
    if (!buffer) {
        fclose(file);
        return sbn_fail(SBN_ERR_NOMEM, "%s: no memory for %lld bytes", path, (long long)info.st_size);
    }
    const size_t got = fread(buffer, 1, (size_t)info.st_size, file);
    const int failed = ferror(file);
    fclose(file);
    if (failed || got != (size_t)info.st_size) {
        free(buffer);
        return sbn_fail(SBN_ERR_IO, "%s: read %zu of %lld bytes", path, got, (long long)info.st_size);
    }
    *bytes = buffer;
    *size = got;
    return SBN_OK;
}
