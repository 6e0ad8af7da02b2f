/* The run machinery shared by `syncbn compare` and `syncbn study` (runs.h). */
#include "runs.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAX_EVALS = (int)(sizeof ((run_metrics *)0)->eval_step / sizeof(int64_t)) };

/* The launcher of the MPI this binary links: another MPI's mpiexec would
 * start P singletons, each training alone, and the P-rank runs would
 * silently be runs of one rank. */
static const char *launcher(void)
{
    const char *named = getenv("SYNCBN_MPIEXEC");
    return named && *named ? named : SYNCBN_BUILT_MPIEXEC;
}

/* Starts argv[0] (searched on PATH) with argv: no shell, so no argument is
 * ever interpreted as code. In `dir` when not NULL; stdout and stderr into
 * `output` when >= 0. Returns the child's pid, or -1 (message printed). */
static pid_t start(char *const argv[], const char *dir, int output)
{
    const pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "syncbn: cannot start %s: %s\n", argv[0], strerror(errno));
        return -1;
    }
    if (pid == 0) {
        if (dir && chdir(dir) != 0) {
            fprintf(stderr, "syncbn: cannot enter %s: %s\n", dir, strerror(errno));
            _exit(127);
        }
        if (output >= 0 && (dup2(output, STDOUT_FILENO) < 0 || dup2(output, STDERR_FILENO) < 0)) _exit(127);
        execvp(argv[0], argv);
        fprintf(stderr, "syncbn: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127); /* what a shell returns for a command it cannot run */
    }
    return pid;
}

/* The child's exit status; -1 when it did not exit normally. */
static int wait_for(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int run_program(char *const argv[], const char *dir, int output)
{
    const pid_t pid = start(argv, dir, output);
    return pid < 0 ? -1 : wait_for(pid);
}

/* Whether `launcher --version` says Open MPI (which needs --oversubscribe). */
static bool launcher_is_open_mpi(void)
{
    int pipe_ends[2];
    if (pipe(pipe_ends) != 0) return false;
    char *argv[] = {(char *)launcher(), "--version", NULL};
    const pid_t pid = start(argv, NULL, pipe_ends[1]);
    close(pipe_ends[1]);
    FILE *version = pid < 0 ? NULL : fdopen(pipe_ends[0], "r");
    if (!version) {
        close(pipe_ends[0]);
        if (pid >= 0) wait_for(pid);
        return false;
    }
    char line[256];
    bool open_mpi = false;
    while (fgets(line, sizeof line, version))
        open_mpi = open_mpi || strstr(line, "Open MPI") || strstr(line, "OpenRTE");
    fclose(version);
    wait_for(pid);
    return open_mpi;
}

bool runs_prepare_launcher(void)
{
    if (geteuid() == 0) { /* OpenMPI refuses root without these */
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    }
    return launcher_is_open_mpi();
}

int runs_launch(const char *self, const run_spec *spec, const char *metrics_path, bool open_mpi, int log_fd)
{
    const sbn_train_options *o = spec->options;
    char ranks[16], batch[32], epochs[32], steps[32], lr[32], momentum[32], decay[32], seed[32], threads[16],
        samples[32], evals[16];
    /* Numbers as `train` parses them back: integers whole, reals with all 17 digits. */
    snprintf(ranks, sizeof ranks, "%d", spec->ranks);
    snprintf(batch, sizeof batch, "%lld", (long long)o->global_batch);
    snprintf(epochs, sizeof epochs, "%lld", (long long)o->epochs);
    snprintf(steps, sizeof steps, "%lld", (long long)o->max_steps);
    snprintf(lr, sizeof lr, "%.17g", o->lr);
    snprintf(momentum, sizeof momentum, "%.17g", o->momentum);
    snprintf(decay, sizeof decay, "%.17g", o->weight_decay);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    snprintf(threads, sizeof threads, "%d", o->threads);
    snprintf(samples, sizeof samples, "%lld", (long long)o->train_samples);
    snprintf(evals, sizeof evals, "%d", spec->eval_points);
    char *argv[64];
    int k = 0;
    argv[k++] = (char *)launcher();
    argv[k++] = "-n", argv[k++] = ranks;
    if (open_mpi) argv[k++] = "--oversubscribe";
    argv[k++] = (char *)self, argv[k++] = "train";
    argv[k++] = "--model", argv[k++] = o->model == SBN_MODEL_SEED ? "seed" : "convnet";
    argv[k++] = "--norm", argv[k++] = (char *)spec->norm;
    argv[k++] = "--batch", argv[k++] = batch, argv[k++] = "--epochs", argv[k++] = epochs;
    if (o->max_steps > 0) argv[k++] = "--steps", argv[k++] = steps; /* 0: run the epochs */
    argv[k++] = "--lr", argv[k++] = lr;
    argv[k++] = "--momentum", argv[k++] = momentum, argv[k++] = "--weight-decay", argv[k++] = decay;
    argv[k++] = "--seed", argv[k++] = seed, argv[k++] = "--threads", argv[k++] = threads;
    argv[k++] = "--lr-schedule", argv[k++] = o->lr_schedule == SBN_LR_COSINE ? "cosine" : "constant";
    if (o->train_samples > 0) argv[k++] = "--train-samples", argv[k++] = samples; /* 0: all */
    if (spec->eval_points > 0) argv[k++] = "--eval-points", argv[k++] = evals;
    argv[k++] = "--data", argv[k++] = (char *)o->data_dir, argv[k++] = "--metrics", argv[k++] = (char *)metrics_path;
    if (!spec->quiet) argv[k++] = "--progress";
    if (o->separate_relu) argv[k++] = "--no-fuse-relu";
    argv[k] = NULL;
    if (!spec->quiet)
        printf("run (%s): %d rank%s x %lld samples, %s\n", spec->label, spec->ranks, spec->ranks > 1 ? "s" : "",
               (long long)(o->global_batch / spec->ranks), spec->norm);
    fflush(stdout); /* before the child writes to it too */
    const int status = run_program(argv, NULL, log_fd);
    if (status == 127) fprintf(stderr, "syncbn: is MPI installed? (or set SYNCBN_MPIEXEC)\n");
    return status;
}

static double number(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsNumber(item) ? item->valuedouble : NAN;
}

/* printf writes a non-finite double as nan, -nan, inf or -inf, which is not
 * JSON: `fixed` gets `line` with each such bare word (outside strings)
 * replaced by null, read back as NaN. fixed holds 2 x strlen(line) + 1 bytes
 * (null is at most one byte longer than a 3-byte word). */
static void nonfinite_to_null(const char *line, char *fixed)
{
    bool in_string = false;
    char *to = fixed;
    for (const char *p = line; *p;) {
        if (*p == '"' && (p == line || p[-1] != '\\')) in_string = !in_string;
        const char *word = p + (*p == '-');
        const bool bare = !in_string && (strncmp(word, "nan", 3) == 0 || strncmp(word, "inf", 3) == 0) &&
                          !isalnum((unsigned char)word[3]) && (p == line || !isalnum((unsigned char)p[-1]));
        if (bare) {
            memcpy(to, "null", 4), to += 4;
            p = word + 3;
        } else {
            *to++ = *p++;
        }
    }
    *to = '\0';
}

/* Grows the per-step arrays; on failure both stay valid (runs_metrics_free frees them). */
static bool grow(run_metrics *m)
{
    const int64_t capacity = m->capacity ? 2 * m->capacity : 1024;
    double *losses = realloc(m->losses, (size_t)capacity * sizeof *losses);
    if (!losses) return false;
    m->losses = losses;
    double *seconds = realloc(m->seconds, (size_t)capacity * sizeof *seconds);
    if (!seconds) return false;
    m->seconds = seconds;
    m->capacity = capacity;
    return true;
}

int runs_read_metrics(run_metrics *m, const char *path, const char *label)
{
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "syncbn: %s: cannot read the metrics of run %s\n", path, label);
        return -1;
    }
    if (!grow(m)) {
        fclose(f);
        fprintf(stderr, "syncbn: no memory for the losses of run %s\n", label);
        return -1;
    }
    char line[4096], fixed[2 * sizeof line];
    while (fgets(line, sizeof line, f)) {
        cJSON *json = cJSON_Parse(line);
        if (!json) {
            nonfinite_to_null(line, fixed);
            json = cJSON_Parse(fixed);
        }
        if (!json) continue; /* not a line of ours (a torn last line of a killed run) */
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "final"))) {
            m->final_train_loss = number(json, "final_train_loss");
            m->test_accuracy = number(json, "test_accuracy");
            m->test_loss = number(json, "test_loss");
            m->ms_per_step = number(json, "ms_per_step");
            m->running_mean_spread = number(json, "running_mean_spread");
            m->finished = true;
        } else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "eval"))) {
            if (m->evals < MAX_EVALS - 1) { /* the last slot is the final evaluation's */
                m->eval_step[m->evals] = (int64_t)number(json, "step");
                m->eval_accuracy[m->evals] = number(json, "test_accuracy");
                m->eval_loss[m->evals] = number(json, "test_loss");
                m->eval_seconds[m->evals] = number(json, "seconds");
                m->evals++;
            }
        } else {
            if (m->steps == m->capacity && !grow(m)) {
                cJSON_Delete(json);
                fclose(f);
                fprintf(stderr, "syncbn: no memory for the losses of run %s (%lld steps)\n", label,
                        (long long)m->steps);
                return -1;
            }
            m->losses[m->steps] = number(json, "loss");
            m->seconds[m->steps] = number(json, "seconds");
            m->steps++;
        }
        cJSON_Delete(json);
    }
    fclose(f);
    if (!m->finished) {
        fprintf(stderr, "syncbn: %s: run %s did not finish\n", path, label);
        return -1;
    }
    m->eval_step[m->evals] = m->steps; /* the final evaluation, after the last step */
    m->eval_accuracy[m->evals] = m->test_accuracy;
    m->eval_loss[m->evals] = m->test_loss;
    m->eval_seconds[m->evals] = m->steps > 0 ? m->seconds[m->steps - 1] : 0.0;
    m->evals++;
    return 0;
}

void runs_metrics_free(run_metrics *m)
{
    free(m->losses), free(m->seconds);
    m->losses = m->seconds = NULL;
}

void runs_out_path(char path[PATH_MAX], const char *out, const char *name)
{
    snprintf(path, PATH_MAX, "%s/%s", out, name);
}

int runs_make_folders(const char *path)
{
    char partial[PATH_MAX];
    snprintf(partial, sizeof partial, "%s", path);
    for (char *slash = strchr(partial + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        mkdir(partial, 0755);
        *slash = '/';
    }
    mkdir(partial, 0755);
    struct stat info;
    return stat(partial, &info) == 0 && S_ISDIR(info.st_mode) ? 0 : -1;
}

int runs_gnuplot(const char *dir, const char *script)
{
    char *argv[] = {"gnuplot", (char *)script, NULL};
    fflush(stdout);
    return run_program(argv, dir, -1);
}
