/* The communicator's own error paths and its single-rank behaviour (the
 * multi-rank behaviour is in test_syncbn_mpi.c). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <syncbn/mpi.h>
#include <syncbn/syncbn.h>

static void expect(sbn_status got, sbn_status want, const char *message_part)
{
    if (got != want || !strstr(sbn_errmsg(), message_part))
        fprintf(stderr, "got %s (%s), want %s with \"%s\"\n", sbn_status_str(got), sbn_errmsg(), sbn_status_str(want),
                message_part);
    assert_int_equal(got, want);
    assert_non_null(strstr(sbn_errmsg(), message_part));
}

static void sum_merge(const double *lower, double *higher, int64_t count)
{
    for (int64_t i = 0; i < count; i++) higher[i] += lower[i];
}

static void test_self_communicator(void **state)
{
    (void)state;
    sbn_comm *comm;
    assert_int_equal(sbn_comm_create_self(&comm), SBN_OK);
    assert_int_equal(sbn_comm_rank(comm), 0);
    assert_int_equal(sbn_comm_size(comm), 1);
    float f[3] = {1, 2, 3};
    double d[2] = {4, 5};
    int64_t i[1] = {7};
    assert_int_equal(sbn_comm_allreduce_sum_float(comm, f, 3), SBN_OK);
    assert_int_equal(sbn_comm_allreduce_sum_double(comm, d, 2), SBN_OK);
    assert_int_equal(sbn_comm_allreduce_sum_int64(comm, i, 1), SBN_OK);
    assert_int_equal(sbn_comm_allreduce_merge(comm, d, 1, 2, sum_merge), SBN_OK);
    assert_int_equal(sbn_comm_broadcast_float(comm, f, 3, 0), SBN_OK);
    assert_true(f[2] == 3 && d[1] == 5 && i[0] == 7); /* one rank: the identity */
    const sbn_comm_counters counters = sbn_comm_get_counters(comm);
    assert_int_equal(counters.collectives, 5);
    assert_int_equal(counters.bytes, 12 + 16 + 8 + 16 + 12);
    sbn_comm *group;
    assert_int_equal(sbn_comm_split_groups(comm, 1, &group), SBN_OK);
    assert_int_equal(sbn_comm_size(group), 1);
    sbn_comm_destroy(group);
    sbn_comm_destroy(comm);
    sbn_comm_destroy(NULL);
}

static void test_argument_errors(void **state)
{
    (void)state;
    sbn_comm *comm;
    float f[2] = {0};
    double d[4] = {0};
    assert_int_equal(sbn_comm_create_self(&comm), SBN_OK);
    expect(sbn_comm_create_self(NULL), SBN_ERR_ARG, "out is NULL");
    expect(sbn_comm_set_timeout(comm, 0.0), SBN_ERR_ARG, "timeout");
    expect(sbn_comm_set_timeout(comm, NAN), SBN_ERR_ARG, "timeout");
    expect(sbn_comm_set_timeout(NULL, 1.0), SBN_ERR_ARG, "comm is NULL");
    expect(sbn_comm_allreduce_sum_float(NULL, f, 2), SBN_ERR_ARG, "comm is NULL");
    expect(sbn_comm_allreduce_sum_float(comm, NULL, 2), SBN_ERR_ARG, "data is NULL");
    expect(sbn_comm_allreduce_sum_double(comm, d, -1), SBN_ERR_ARG, "count");
    expect(sbn_comm_allreduce_merge(comm, d, 2, 2, NULL), SBN_ERR_ARG, "merge function is NULL");
    expect(sbn_comm_allreduce_merge(comm, d, 2, 0, sum_merge), SBN_ERR_ARG, "element_doubles");
    expect(sbn_comm_broadcast_float(comm, f, 2, 1), SBN_ERR_ARG, "root 1");
    expect(sbn_comm_broadcast_float(comm, f, 2, -1), SBN_ERR_ARG, "root -1");
    sbn_comm *group = (sbn_comm *)f;
    expect(sbn_comm_split_groups(comm, 2, &group), SBN_ERR_ARG, "does not divide");
    assert_null(group);
    expect(sbn_comm_split_groups(NULL, 1, &group), SBN_ERR_ARG, "parent is NULL");
    expect(sbn_comm_split_groups(comm, 1, NULL), SBN_ERR_ARG, "out is NULL");
    assert_int_equal(sbn_comm_get_counters(comm).collectives, 0); /* failed calls start no collective */
    assert_int_equal(sbn_comm_rank(NULL), 0);
    assert_int_equal(sbn_comm_size(NULL), 1);
    sbn_comm_destroy(comm);
}

/* Before MPI_Init there is no MPI communicator to make. */
static void test_mpi_before_init(void **state)
{
    (void)state;
    sbn_comm *comm = (sbn_comm *)&comm;
    expect(sbn_comm_create_mpi(MPI_COMM_WORLD, &comm), SBN_ERR_COMM, "not initialized");
    assert_null(comm);
    expect(sbn_comm_create_mpi(MPI_COMM_WORLD, NULL), SBN_ERR_ARG, "out is NULL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_self_communicator), cmocka_unit_test(test_argument_errors),
                                       cmocka_unit_test(test_mpi_before_init)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
