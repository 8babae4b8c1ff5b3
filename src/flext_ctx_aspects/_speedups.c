/* The compiled parts of flext_ctx_aspects (optional: the pure-Python code does the same).
 *
 * DigestCore: the per-record path of the statistics sink. Adding one duration to a digest
 * in Python costs ~15 attribute reads and writes, two C calls for the bin key and an array
 * item increment (~250 ns); here it is one method call. The Python subclass
 * (flext_ctx_aspects.sinks._sketch.Digest) keeps everything else: growing the bins
 * (add_key), merging, quantiles, the JSON form. The state is the same attributes the
 * pure-Python base class has, so both implementations read and write it alike:
 *   count, errors, zero_count, offset   C integers (long long / Py_ssize_t)
 *   total_ns, min_ns, max_ns            Python ints (exact, unbounded; min_ns starts at
 *                                       the NO_MIN sentinel 2**64)
 *   bins                                an array('Q') of bin counts from key `offset` on
 * The bin key is the one ddsketch's LogarithmicMapping computes, ceil(log2(d) * multiplier),
 * with the multiplier handed over by the Python module (set_multiplier), so both
 * implementations compute the same double, bit for bit.
 *
 * Driver: the per-call wrapper function of the sync shapes that carry no hooks (fields
 * only, one timing only, fields and one timing): what _engine._sync_driver returns as
 * call_in_scope / call_timed_only / call_timed in pure Python, line for line the same steps
 * and the same calls into Python (the compiled snapshot update, _emit.finish, the direct
 * observer, report_internal_error). Being C, it adds no Python frame between the caller and
 * the wrapped function.
 *
 * AspectWrapperBase (wrapper_base()): wrapt's C _FunctionWrapperBase with a vectorcall entry
 * of its own, the base of _engine.AspectWrapper. It hands a call, as received, to a compiled
 * driver (which calls the function with the same vector), or to a Python driver in wrapt's
 * four-argument convention, and leaves to wrapt's __call__ whatever wrapt would do
 * differently. Its __get__ binds a function's stand-in as a function binds (a method
 * object), a static one not at all and an instrumented classmethod as classmethod.__get__
 * would, leaving other bindings to wrapt or to Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#ifndef Py_TPFLAGS_HAVE_VECTORCALL
#define Py_TPFLAGS_HAVE_VECTORCALL _Py_TPFLAGS_HAVE_VECTORCALL
#endif

/* What the Python side expects (_native.ABI): bumped whenever an entry point changes, so a
 * module built from an older source is refused instead of failing at import. */
#define SPEEDUPS_ABI 10

static double multiplier = 0.0;

typedef struct {
    PyObject_HEAD
    long long count;
    long long errors;
    long long zero_count;
    Py_ssize_t offset;
    PyObject *total_ns;
    PyObject *min_ns;
    PyObject *max_ns;
    PyObject *bins;
} DigestCore;

static void
DigestCore_dealloc(DigestCore *self)
{
    Py_XDECREF(self->total_ns);
    Py_XDECREF(self->min_ns);
    Py_XDECREF(self->max_ns);
    Py_XDECREF(self->bins);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Anything the fast path does not cover (a duration that is not an exact int or does not
 * fit in a C long long, state not set yet, bins that are not an array('Q')) goes to the
 * Python implementation, so the outcome never depends on which one is active. */
static PyObject *
add_generic(DigestCore *self, PyObject *duration, PyObject *failed)
{
    return PyObject_CallMethod((PyObject *)self, "_add_generic", "OO", duration, failed);
}

static PyObject *
DigestCore_add(DigestCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        /* Keywords (add(d, failed=False)): the Python implementation parses them alike. */
        PyObject *generic = PyObject_GetAttrString((PyObject *)self, "_add_generic");
        if (generic == NULL) {
            return NULL;
        }
        PyObject *result = PyObject_Vectorcall(generic, args, (size_t)nargs, kwnames);
        Py_DECREF(generic);
        return result;
    }
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "add() takes 2 arguments (duration_ns, failed), %zd given",
                     nargs);
        return NULL;
    }
    PyObject *duration = args[0];
    if (!PyLong_CheckExact(duration) || multiplier == 0.0 || self->total_ns == NULL || self->min_ns == NULL ||
        self->max_ns == NULL || self->bins == NULL) {
        return add_generic(self, duration, args[1]);
    }
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(duration, &overflow);
    if (overflow) {
        return add_generic(self, duration, args[1]);
    }
    if (value == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int failed = PyObject_IsTrue(args[1]);
    if (failed < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(self->bins, &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return add_generic(self, duration, args[1]);
    }
    if (view.itemsize != 8 || view.format == NULL || strcmp(view.format, "Q") != 0) {
        PyBuffer_Release(&view);
        return add_generic(self, duration, args[1]);
    }
    /* Everything that can fail is done before any state changes: a record is added
     * entirely or not at all. */
    PyObject *total = PyNumber_Add(self->total_ns, duration);
    if (total == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int below = PyObject_RichCompareBool(duration, self->min_ns, Py_LT);
    int above = below < 0 ? -1 : PyObject_RichCompareBool(duration, self->max_ns, Py_GT);
    if (below < 0 || above < 0) {
        Py_DECREF(total);
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_SETREF(self->total_ns, total);
    if (below) {
        Py_INCREF(duration);
        Py_SETREF(self->min_ns, duration);
    }
    if (above) {
        Py_INCREF(duration);
        Py_SETREF(self->max_ns, duration);
    }
    self->count += 1;
    if (failed) {
        self->errors += 1;
    }
    if (value <= 0) {
        self->zero_count += 1;
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    long long key = (long long)ceil(log2((double)value) * multiplier);
    long long index = key - (long long)self->offset;
    Py_ssize_t length = view.len / 8;
    if (index >= 0 && index < (long long)length) {
        ((unsigned long long *)view.buf)[index] += 1;
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    PyBuffer_Release(&view);
    /* Outside the bins held so far: the Python side grows them (rare: once per new key). */
    return PyObject_CallMethod((PyObject *)self, "add_key", "Li", key, 1);
}

static PyMethodDef DigestCore_methods[] = {
    {"add", (PyCFunction)(void (*)(void))DigestCore_add, METH_FASTCALL | METH_KEYWORDS,
     "add(duration_ns, failed): add one duration (nanoseconds) and its outcome."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef DigestCore_members[] = {
    {"count", T_LONGLONG, offsetof(DigestCore, count), 0, "durations added"},
    {"errors", T_LONGLONG, offsetof(DigestCore, errors), 0, "failed operations"},
    {"zero_count", T_LONGLONG, offsetof(DigestCore, zero_count), 0, "durations <= 0"},
    {"offset", T_PYSSIZET, offsetof(DigestCore, offset), 0, "bin key of bins[0]"},
    {"total_ns", T_OBJECT_EX, offsetof(DigestCore, total_ns), 0, "sum of the durations"},
    {"min_ns", T_OBJECT_EX, offsetof(DigestCore, min_ns), 0, "smallest duration"},
    {"max_ns", T_OBJECT_EX, offsetof(DigestCore, max_ns), 0, "largest duration"},
    {"bins", T_OBJECT_EX, offsetof(DigestCore, bins), 0, "array('Q') of bin counts"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject DigestCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flext_ctx_aspects._speedups.DigestCore",
    .tp_basicsize = sizeof(DigestCore),
    .tp_dealloc = (destructor)DigestCore_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The compiled state and add() of a statistics digest (see _sketch.Digest).",
    .tp_methods = DigestCore_methods,
    .tp_members = DigestCore_members,
    .tp_new = PyType_GenericNew,
};


/* --- exceptions, across the Python versions -------------------------------------------- */

static PyObject *
fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* Raise `exc` again (steals the reference). */
static void
restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* A new exception is pending while `handled` was being handled: chain it as Python does
 * (new.__context__ = handled). Steals `handled`. */
static void
chain_pending(PyObject *handled)
{
    if (handled == NULL) {
        return;
    }
    PyObject *pending = fetch_exception();
    if (pending != NULL && pending != handled) {
        PyException_SetContext(pending, handled); /* steals handled */
    }
    else {
        Py_DECREF(handled);
    }
    if (pending != NULL) {
        restore_exception(pending);
    }
}

/* --- the shared state of every driver (configure_drivers) ------------------------------ */

#if defined(_MSC_VER)
#define THREAD_LOCAL __declspec(thread)
#else
#define THREAD_LOCAL _Thread_local
#endif

/* This thread is running sinks from the compiled record path (finish's guard, see there). */
static THREAD_LOCAL int t_in_sinks = 0;

static PyObject *g_sinks = NULL;            /* _emit.active: a list, non-empty = listening */
static PyObject *g_direct = NULL;           /* _emit.direct: [observer or None] */
static PyObject *g_finish = NULL;           /* _emit.finish */
static PyObject *g_observer_failed = NULL;  /* _emit.observer_failed */
static PyObject *g_report = NULL;           /* _diagnostics.report_internal_error */
static PyObject *g_snapshot = NULL;         /* _state._snapshot (ContextVar) */
static PyObject *g_operation = NULL;        /* _state._operation (ContextVar) */
static PyObject *g_clock = NULL;            /* time.perf_counter_ns */
static PyObject *g_record_path = NULL;      /* _emit.record_path: [sinks tuple or None] */
static PyObject *g_emitting = NULL;         /* _emit._emitting: thread idents in sinks */
static PyObject *g_wall = NULL;             /* _emit._wall: [offset, synced_at] */
static PyObject *g_sink_failed = NULL;      /* _emit.sink_failed */
static PyObject *g_record_type = NULL;      /* records.OperationRecord */
static PyObject *g_frozen = NULL;           /* records.FrozenDict */
static PyObject *g_empty_mapping = NULL;    /* records.EMPTY_MAPPING */
static PyObject *g_time_ns = NULL;          /* time.time_ns */
static long long g_wall_resync_ns = 0;      /* _emit.WALL_RESYNC_NS */
static PyObject *g_str_ok = NULL, *g_str_error = NULL, *g_str_emit = NULL;
static PyObject *g_str_building = NULL, *g_str_qualname = NULL;
static int g_disabled = 0;                  /* _engine.set_enabled(False) */

/* time.perf_counter_ns(), without a call where the clock is known to be the same one. */
static int
now_ns(long long *out)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t value;
    if (PyTime_PerfCounter(&value) < 0) {
        return -1;
    }
    *out = (long long)value;
    return 0;
#elif defined(__linux__)
    /* CPython's perf_counter on Linux is clock_gettime(CLOCK_MONOTONIC). */
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    *out = (long long)ts.tv_sec * 1000000000LL + (long long)ts.tv_nsec;
    return 0;
#else
    PyObject *value = PyObject_CallNoArgs(g_clock);
    if (value == NULL) {
        return -1;
    }
    *out = PyLong_AsLongLong(value);
    Py_DECREF(value);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
#endif
}

/* --- Update: a snapshot update run without a frame -----------------------------------------
 *
 * _compile emits every snapshot update as Python source. The updates that read nothing of
 * the call and set built-in fields only (new ids, current values, constants, the trace root:
 * what the built-in aspects and instrumenting a package make) come with a short program of
 * the same steps, run here. The ids are drawn from the library's random.Random as the
 * source draws them (the same bits, in the same order, so a seeded run gives the same ids
 * in both implementations). A configured id generator where the program makes an id, or an
 * external-trace hook where it takes a trace root, sends the call to the Python update
 * (`fallback`), and so does anything but a snapshot tuple: it fails or succeeds exactly as
 * the Python update does. */

enum { OPERAND_SLOT = 0, OPERAND_STEP = 1, OPERAND_CONSTANT = 2 };
enum { STEP_NEW_ID = 0, STEP_OR_NEW_ID = 1, STEP_COPY = 2, STEP_FIRST = 3 };
#define UPDATE_MAX_STEPS 32

typedef struct {
    int kind;
    Py_ssize_t index;
} Operand;

typedef struct {
    int op;
    Operand a, b;
} Step;

typedef struct {
    PyObject_HEAD
    PyObject *fallback;  /* the Python update this program was made from */
    PyObject *constants; /* tuple */
    Py_ssize_t nsteps, noutputs;
    Py_ssize_t slots_read; /* the snapshot must have at least this many items */
    int draws_ids;         /* a step makes a new id: the generator must be the default */
    int uses_trace_hook;
    Step steps[UPDATE_MAX_STEPS];
    Operand *outputs;
    vectorcallfunc vectorcall;
} Update;

static PyObject *g_id_generator = NULL; /* _ids.active_generator: [generator] */
static PyObject *g_default_id = NULL;   /* _ids.generate_id */
static PyObject *g_randbits = NULL;     /* _ids.randbits (the library's Random) */
static PyObject *g_trace_hook = NULL;   /* _trace.external_trace: [hook or None] */
static PyObject *g_int_128 = NULL;

/* The 128 bits of an id, drawn from _ids.rng's own Mersenne Twister state: what
 * getrandbits(128) does (four 32-bit words, the first the least significant) without the
 * call, the int it makes and the conversion back, ~3/4 of an id's cost. The state is
 * _random.Random's (a C struct not in CPython's headers, unchanged in 3.10-3.13), read only
 * after configure_updates() has checked this layout against getrandbits on a probe. */
typedef struct {
    PyObject_HEAD
    int index;
    uint32_t state[624];
} RandomLayout;

static RandomLayout *g_twister = NULL; /* _ids.rng where its layout was checked, else NULL */

static uint32_t
twister_word(RandomLayout *random)
{
    enum { N = 624, M = 397 };
    static const uint32_t mag01[2] = {0x0U, 0x9908b0dfU};
    uint32_t *mt = random->state, y;
    if (random->index >= N) {
        int kk;
        for (kk = 0; kk < N - M; kk++) {
            y = (mt[kk] & 0x80000000U) | (mt[kk + 1] & 0x7fffffffU);
            mt[kk] = mt[kk + M] ^ (y >> 1) ^ mag01[y & 0x1U];
        }
        for (; kk < N - 1; kk++) {
            y = (mt[kk] & 0x80000000U) | (mt[kk + 1] & 0x7fffffffU);
            mt[kk] = mt[kk + (M - N)] ^ (y >> 1) ^ mag01[y & 0x1U];
        }
        y = (mt[N - 1] & 0x80000000U) | (mt[0] & 0x7fffffffU);
        mt[N - 1] = mt[M - 1] ^ (y >> 1) ^ mag01[y & 0x1U];
        random->index = 0;
    }
    y = mt[random->index++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
}

/* getrandbits(128).to_bytes(16, "big") from `random`'s state. */
static void
twister_bits(RandomLayout *random, unsigned char bytes[16])
{
    for (int word = 3; word >= 0; word--) {
        uint32_t value = twister_word(random);
        bytes[4 * word] = (unsigned char)(value >> 24);
        bytes[4 * word + 1] = (unsigned char)(value >> 16);
        bytes[4 * word + 2] = (unsigned char)(value >> 8);
        bytes[4 * word + 3] = (unsigned char)value;
    }
}

/* (bits or 1).hex() for 16 big-endian bytes. */
static PyObject *
id_text(unsigned char bytes[16])
{
    int zero = 1;
    for (int i = 0; i < 16; i++) {
        zero &= bytes[i] == 0;
    }
    if (zero) {
        bytes[15] = 1; /* `or 1`: never the all-zero (invalid) trace id */
    }
    PyObject *text = PyUnicode_New(32, 127);
    if (text == NULL) {
        return NULL;
    }
    static const char digits[] = "0123456789abcdef";
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = (Py_UCS1)digits[bytes[i] >> 4];
        out[2 * i + 1] = (Py_UCS1)digits[bytes[i] & 15];
    }
    return text;
}

/* _ids.generate_id(): (randbits(128) or 1).to_bytes(16, "big").hex(). */
static PyObject *
new_id(void)
{
    unsigned char bytes[16];
    if (g_twister != NULL) {
        twister_bits(g_twister, bytes);
        return id_text(bytes);
    }
    PyObject *bits = PyObject_CallOneArg(g_randbits, g_int_128);
    if (bits == NULL) {
        return NULL;
    }
    if (!PyLong_CheckExact(bits)) {
        Py_DECREF(bits);
        PyErr_SetString(PyExc_TypeError, "getrandbits() returned a non-int");
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t needed = PyLong_AsNativeBytes(
        bits, bytes, 16, Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
    int failed = needed < 0 || needed > 16;
#else
    int failed = _PyLong_AsByteArray((PyLongObject *)bits, bytes, 16, 0, 0) < 0;
#endif
    Py_DECREF(bits);
    if (failed) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_OverflowError, "getrandbits(128) returned more than 128 bits");
        }
        return NULL;
    }
    return id_text(bytes);
}

/* Borrowed. */
static inline PyObject *
operand_value(Update *self, PyObject *snapshot, PyObject **values, Operand operand)
{
    switch (operand.kind) {
    case OPERAND_SLOT:
        return PyTuple_GET_ITEM(snapshot, operand.index);
    case OPERAND_STEP:
        return values[operand.index];
    default:
        return PyTuple_GET_ITEM(self->constants, operand.index);
    }
}

static PyObject *
Update_vectorcall(Update *self, PyObject *const *argv, size_t nargsf, PyObject *kwnames)
{
    PyObject *snapshot = PyVectorcall_NARGS(nargsf) == 4 ? argv[0] : NULL;
    /* Both lists hold one item (checked by configure_updates; the Python side only ever
     * assigns item 0). */
    if (snapshot == NULL || kwnames != NULL || !PyTuple_CheckExact(snapshot) ||
        PyTuple_GET_SIZE(snapshot) < self->slots_read ||
        (self->draws_ids && PyList_GET_ITEM(g_id_generator, 0) != g_default_id) ||
        (self->uses_trace_hook && PyList_GET_ITEM(g_trace_hook, 0) != Py_None)) {
        return PyObject_Vectorcall(self->fallback, argv, nargsf, kwnames);
    }
    PyObject *values[UPDATE_MAX_STEPS];
    Py_ssize_t done = 0;
    PyObject *result = NULL;
    for (; done < self->nsteps; done++) {
        Step *step = &self->steps[done];
        PyObject *value = NULL;
        switch (step->op) {
        case STEP_NEW_ID:
            value = new_id();
            break;
        case STEP_OR_NEW_ID:
            value = operand_value(self, snapshot, values, step->a);
            value = value != Py_None ? Py_NewRef(value) : new_id();
            break;
        case STEP_COPY:
            value = Py_NewRef(operand_value(self, snapshot, values, step->a));
            break;
        default: /* STEP_FIRST */
            value = operand_value(self, snapshot, values, step->a);
            if (value == Py_None) {
                value = operand_value(self, snapshot, values, step->b);
            }
            Py_INCREF(value);
        }
        if (value == NULL) {
            goto done;
        }
        values[done] = value;
    }
    result = PyTuple_New(self->noutputs);
    if (result != NULL) {
        for (Py_ssize_t i = 0; i < self->noutputs; i++) {
            PyObject *value = operand_value(self, snapshot, values, self->outputs[i]);
            PyTuple_SET_ITEM(result, i, Py_NewRef(value));
        }
    }
done:
    for (Py_ssize_t i = 0; i < done; i++) {
        Py_DECREF(values[i]);
    }
    return result;
}

/* One (kind, index) pair, checked against what it may refer to. */
static int
parse_operand(PyObject *item, Py_ssize_t steps_before, Py_ssize_t nconstants,
              Py_ssize_t *slots_read, Operand *out)
{
    long kind, index;
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        goto bad;
    }
    kind = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
    index = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
    if (PyErr_Occurred()) {
        return -1;
    }
    if (index < 0 || (kind == OPERAND_STEP && index >= steps_before) ||
        (kind == OPERAND_CONSTANT && index >= nconstants) ||
        (kind != OPERAND_SLOT && kind != OPERAND_STEP && kind != OPERAND_CONSTANT)) {
        goto bad;
    }
    if (kind == OPERAND_SLOT && index + 1 > *slots_read) {
        *slots_read = index + 1;
    }
    out->kind = (int)kind;
    out->index = index;
    return 0;
bad:
    PyErr_Format(PyExc_ValueError, "Update(): invalid operand %R", item);
    return -1;
}

static PyObject *
Update_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *fallback, *constants, *steps, *outputs;
    int uses_trace_hook;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) {
        PyErr_SetString(PyExc_TypeError, "Update() takes its arguments positionally");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO!O!O!p:Update", &fallback, &PyTuple_Type, &constants,
                          &PyTuple_Type, &steps, &PyTuple_Type, &outputs, &uses_trace_hook)) {
        return NULL;
    }
    if (g_randbits == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Update(): configure_updates() was not called");
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "Update(): the fallback must be callable");
        return NULL;
    }
    Py_ssize_t nsteps = PyTuple_GET_SIZE(steps), noutputs = PyTuple_GET_SIZE(outputs);
    if (nsteps > UPDATE_MAX_STEPS) {
        PyErr_Format(PyExc_ValueError, "Update(): more than %d steps", UPDATE_MAX_STEPS);
        return NULL;
    }
    Update *self = (Update *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->fallback = Py_NewRef(fallback);
    self->constants = Py_NewRef(constants);
    self->uses_trace_hook = uses_trace_hook;
    self->vectorcall = (vectorcallfunc)Update_vectorcall;
    self->outputs = PyMem_New(Operand, noutputs > 0 ? noutputs : 1);
    if (self->outputs == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    Py_ssize_t nconstants = PyTuple_GET_SIZE(constants);
    for (Py_ssize_t i = 0; i < nsteps; i++) {
        PyObject *item = PyTuple_GET_ITEM(steps, i);
        Step *step = &self->steps[i];
        long op;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 1) {
            PyErr_Format(PyExc_ValueError, "Update(): invalid step %R", item);
            goto fail;
        }
        op = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        if (op == -1 && PyErr_Occurred()) {
            goto fail;
        }
        Py_ssize_t operands = op == STEP_NEW_ID ? 0 : op == STEP_FIRST ? 2
                              : (op == STEP_OR_NEW_ID || op == STEP_COPY) ? 1
                                                                          : -1;
        if (operands < 0 || PyTuple_GET_SIZE(item) != operands + 1) {
            PyErr_Format(PyExc_ValueError, "Update(): invalid step %R", item);
            goto fail;
        }
        step->op = (int)op;
        self->draws_ids |= op == STEP_NEW_ID || op == STEP_OR_NEW_ID;
        if (operands >= 1 && parse_operand(PyTuple_GET_ITEM(item, 1), i, nconstants,
                                           &self->slots_read, &step->a) < 0) {
            goto fail;
        }
        if (operands == 2 && parse_operand(PyTuple_GET_ITEM(item, 2), i, nconstants,
                                           &self->slots_read, &step->b) < 0) {
            goto fail;
        }
    }
    self->nsteps = nsteps;
    for (Py_ssize_t i = 0; i < noutputs; i++) {
        if (parse_operand(PyTuple_GET_ITEM(outputs, i), nsteps, nconstants, &self->slots_read,
                          &self->outputs[i]) < 0) {
            goto fail;
        }
    }
    self->noutputs = noutputs;
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static int
Update_traverse(Update *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback); /* its globals may hold what it is reachable from */
    Py_VISIT(self->constants);
    return 0;
}

static int
Update_clear(Update *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->constants);
    return 0;
}

static void
Update_dealloc(Update *self)
{
    PyObject_GC_UnTrack(self);
    Update_clear(self);
    PyMem_Free(self->outputs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* _compile.reads_call(): a program never reads the call (no step can). */
static PyObject *
Update_get_reads_call(Update *self, void *closure)
{
    Py_RETURN_FALSE;
}

static PyObject *
Update_get_fallback(Update *self, void *closure)
{
    return Py_NewRef(self->fallback);
}

static PyGetSetDef Update_getset[] = {
    {"reads_call", (getter)Update_get_reads_call, NULL, "Always False.", NULL},
    {"fallback", (getter)Update_get_fallback, NULL, "The Python update it was made from.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject UpdateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flext_ctx_aspects._speedups.Update",
    .tp_basicsize = sizeof(Update),
    .tp_dealloc = (destructor)Update_dealloc,
    .tp_vectorcall_offset = offsetof(Update, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Update(fallback, constants, steps, outputs, uses_trace_hook): a snapshot update "
              "program (see _compile.Program).",
    .tp_new = Update_new,
    .tp_traverse = (traverseproc)Update_traverse,
    .tp_clear = (inquiry)Update_clear,
    .tp_free = PyObject_GC_Del,
    .tp_getset = Update_getset,
};

/* Whether ids drawn from `probe`'s state by twister_bits are `expected` (what
 * _ids.generate_id drew from a twin of it): the check of RandomLayout. */
static int
twister_matches(PyObject *base, PyObject *probe, PyObject *expected)
{
    if (!PyType_Check(base) || ((PyTypeObject *)base)->tp_basicsize != sizeof(RandomLayout) ||
        !PyObject_TypeCheck(probe, (PyTypeObject *)base)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(expected); i++) {
        unsigned char bytes[16];
        twister_bits((RandomLayout *)probe, bytes);
        PyObject *drawn = id_text(bytes);
        if (drawn == NULL) {
            return -1;
        }
        int equal = PyObject_RichCompareBool(drawn, PyList_GET_ITEM(expected, i), Py_EQ);
        Py_DECREF(drawn);
        if (equal <= 0) {
            return equal;
        }
    }
    return 1;
}

static PyObject *
configure_updates(PyObject *module, PyObject *args)
{
    PyObject *generator, *default_id, *randbits, *trace_hook, *rng, *base, *probe, *expected;
    if (!PyArg_ParseTuple(args, "O!OOO!OOOO!", &PyList_Type, &generator, &default_id,
                          &randbits, &PyList_Type, &trace_hook, &rng, &base, &probe,
                          &PyList_Type, &expected)) {
        return NULL;
    }
    if (PyList_GET_SIZE(generator) != 1 || PyList_GET_SIZE(trace_hook) != 1) {
        PyErr_SetString(PyExc_TypeError, "configure_updates(): unexpected shared state");
        return NULL;
    }
    int matches = twister_matches(base, probe, expected);
    if (matches < 0) {
        return NULL;
    }
    /* rng must be the instance randbits is bound to, of the checked layout. */
    PyObject *bound_to = PyObject_GetAttrString(randbits, "__self__");
    if (bound_to == NULL) {
        PyErr_Clear();
        matches = 0;
    }
    else {
        matches = matches && bound_to == rng && PyObject_TypeCheck(rng, (PyTypeObject *)base);
        Py_DECREF(bound_to);
    }
    if (g_int_128 == NULL && (g_int_128 = PyLong_FromLong(128)) == NULL) {
        return NULL;
    }
    Py_XSETREF(g_id_generator, Py_NewRef(generator));
    Py_XSETREF(g_default_id, Py_NewRef(default_id));
    Py_XSETREF(g_randbits, Py_NewRef(randbits));
    Py_XSETREF(g_trace_hook, Py_NewRef(trace_hook));
    Py_XDECREF(g_twister);
    g_twister = matches ? (RandomLayout *)Py_NewRef(rng) : NULL;
    return PyBool_FromLong(matches);
}

typedef struct {
    PyObject_HEAD
    PyObject *update;   /* the compiled snapshot update, or NULL (no fields) */
    PyObject *qualname; /* of the decorated function, for the failure report */
    PyObject *spec;     /* the TimingSpec, or NULL (no timing) */
    PyObject *name;     /* spec.name */
    long long min_duration_ns; /* spec.min_duration_ns: filtered here, before any path */
    int keep_errors;           /* spec.keep_errors */
    int reads_call;            /* the update reads the call's arguments (a field source) */
    vectorcallfunc vectorcall;
    /* A deferred driver (Driver.deferred): build(*build_args) makes the real driver at the
     * first call. A compiled one is copied into this object; any other is delegated to. */
    PyObject *build;
    PyObject *build_args;
    PyObject *delegate;
} Driver;

static int
Driver_traverse(Driver *self, visitproc visit, void *arg)
{
    /* build_args hold the decorated function, whose globals may hold its wrapper. */
    Py_VISIT(self->update);
    Py_VISIT(self->spec);
    Py_VISIT(self->build);
    Py_VISIT(self->build_args);
    Py_VISIT(self->delegate);
    return 0;
}

static int
Driver_clear(Driver *self)
{
    Py_CLEAR(self->update);
    Py_CLEAR(self->spec);
    Py_CLEAR(self->build);
    Py_CLEAR(self->build_args);
    Py_CLEAR(self->delegate);
    return 0;
}

static void
Driver_dealloc(Driver *self)
{
    PyObject_GC_UnTrack(self);
    Driver_clear(self);
    Py_XDECREF(self->qualname);
    Py_XDECREF(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The update raised: an Exception is reported and the call goes on without the fields (1);
 * anything else (a BaseException, a failing report) propagates (0). */
static int
fields_failed(Driver *self)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return 0;
    }
    PyObject *exc = fetch_exception();
    /* The message is built on failure only: decorating stays cheap (whole packages). */
    PyObject *message = PyUnicode_FromFormat("computing context fields for %U", self->qualname);
    if (message == NULL) {
        chain_pending(exc);
        return 0;
    }
    PyObject *reported = PyObject_CallFunctionObjArgs(g_report, message, exc, NULL);
    Py_DECREF(message);
    if (reported == NULL) {
        chain_pending(exc);
        return 0;
    }
    Py_DECREF(reported);
    Py_DECREF(exc);
    return 1;
}

/* The last value read from one of _emit._wall's two ints: they change once a second at most
 * (WALL_RESYNC_NS), and PyLong_AsLongLong of a multi-digit int is slow. The int is held, so
 * its address cannot be reused for another value while cached. */
typedef struct {
    PyObject *held;
    long long value;
} WallCache;

static WallCache g_synced_cache = {NULL, 0}, g_offset_cache = {NULL, 0};

static int
wall_value(PyObject *number, WallCache *cache, long long *out)
{
    if (number != cache->held) {
        long long value = PyLong_AsLongLong(number);
        if (value == -1 && PyErr_Occurred()) {
            return -1;
        }
        Py_XSETREF(cache->held, Py_NewRef(number));
        cache->value = value;
    }
    *out = cache->value;
    return 0;
}

/* _emit.finish's record path, for what record_path allows (every sink wants a record, no
 * filter anywhere): the same re-entrancy guard, wall-clock offset, record and dispatch.
 * 0, or -1 with an error (only a BaseException from a sink, as finish lets through). */
static int
emit_record(Driver *self, PyObject *path, long long start, long long end, PyObject *exc,
            PyObject *metadata)
{
    /* path: (sinks, their bound emit methods), as _emit._refresh builds it. */
    PyObject *sinks = PyTuple_GET_ITEM(path, 0);
    PyObject *emits = PyTuple_GET_ITEM(path, 1);
    /* finish's re-entrancy guard: a sink's own instrumented code is not recorded. This path
     * marks its thread in a C thread-local (finish asks in_sinks()); finish marks threads
     * in _emitting, read here only when some thread is in it. */
    if (t_in_sinks) {
        return 0;
    }
    if (PySet_GET_SIZE(g_emitting) > 0) {
        PyObject *me = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
        if (me == NULL) {
            return -1;
        }
        int inside = PySet_Contains(g_emitting, me);
        Py_DECREF(me);
        if (inside != 0) {
            return inside < 0 ? -1 : 0;
        }
    }
    t_in_sinks = 1;
    PyObject *record = NULL;
    PyObject *offset = NULL, *start_ns = NULL, *duration = NULL, *error_type = NULL;
    PyObject *recorded_metadata = NULL, *snapshot = NULL;
    long long synced_at;
    if (wall_value(PyList_GET_ITEM(g_wall, 1), &g_synced_cache, &synced_at) < 0) {
        goto failed_to_build;
    }
    if (end - synced_at > g_wall_resync_ns) {
        PyObject *wall_now = PyObject_CallNoArgs(g_time_ns);
        long long perf_now;
        if (wall_now == NULL || now_ns(&perf_now) < 0) {
            Py_XDECREF(wall_now);
            goto failed_to_build;
        }
        long long wall_value = PyLong_AsLongLong(wall_now);
        Py_DECREF(wall_now);
        PyObject *new_offset = PyLong_FromLongLong(wall_value - perf_now);
        PyObject *new_synced = PyLong_FromLongLong(end);
        if (new_offset == NULL || new_synced == NULL) {
            Py_XDECREF(new_offset);
            Py_XDECREF(new_synced);
            goto failed_to_build;
        }
        PyList_SetItem(g_wall, 0, new_offset); /* steals */
        PyList_SetItem(g_wall, 1, new_synced);
    }
    offset = Py_NewRef(PyList_GET_ITEM(g_wall, 0));
    long long offset_value;
    if (wall_value(offset, &g_offset_cache, &offset_value) < 0) {
        goto failed_to_build;
    }
    start_ns = PyLong_FromLongLong(start + offset_value);
    duration = PyLong_FromLongLong(end - start);
    if (start_ns == NULL || duration == NULL) {
        goto failed_to_build;
    }
    if (exc != NULL) {
        error_type = PyObject_GetAttr((PyObject *)Py_TYPE(exc), g_str_qualname);
        if (error_type == NULL) {
            goto failed_to_build;
        }
    }
    else {
        error_type = Py_NewRef(Py_None);
    }
    if (PyDict_GET_SIZE(metadata) > 0) {
        recorded_metadata = PyObject_CallOneArg(g_frozen, metadata);
        if (recorded_metadata == NULL) {
            goto failed_to_build;
        }
    }
    else {
        recorded_metadata = Py_NewRef(g_empty_mapping);
    }
    if (PyContextVar_Get(g_snapshot, NULL, &snapshot) < 0) {
        goto failed_to_build;
    }
    /* What tuple.__new__(OperationRecord, fields) makes (finish's way), allocated directly:
     * OperationRecord is a tuple subclass with __slots__ = () (checked at configure). */
    record = ((PyTypeObject *)g_record_type)->tp_alloc((PyTypeObject *)g_record_type, 9);
    if (record == NULL) {
        goto failed_to_build;
    }
    /* The references made above move into the record. */
    PyTuple_SET_ITEM(record, 0, Py_NewRef(self->name));
    PyTuple_SET_ITEM(record, 1, start_ns);
    PyTuple_SET_ITEM(record, 2, duration);
    PyTuple_SET_ITEM(record, 3, Py_NewRef(exc != NULL ? g_str_error : g_str_ok));
    PyTuple_SET_ITEM(record, 4, error_type);
    PyTuple_SET_ITEM(record, 5, recorded_metadata);
    PyTuple_SET_ITEM(record, 6, Py_NewRef(Py_None));
    PyTuple_SET_ITEM(record, 7, Py_NewRef(PyTuple_GET_ITEM(self->spec, 1)));
    PyTuple_SET_ITEM(record, 8, snapshot);
    Py_DECREF(offset);
    /* CPython's own rule for tuples: one holding only untracked objects can never be part of
     * a cycle, so the collector need not follow it. Here: the shared, immutable empty mapping
     * and a snapshot the collector has untracked (text fields only); the rest is str, int and
     * None. Records kept by the thousand (a collecting sink) then cost the collector nothing. */
    if (recorded_metadata == g_empty_mapping &&
        !(PyObject_IS_GC(snapshot) && PyObject_GC_IsTracked(snapshot))) {
        PyObject_GC_UnTrack(record);
    }

    int result = 0;
    Py_ssize_t count = PyTuple_GET_SIZE(sinks);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *sink = PyTuple_GET_ITEM(sinks, i);
        PyObject *emitted = PyObject_CallOneArg(PyTuple_GET_ITEM(emits, i), record);
        if (emitted != NULL) {
            Py_DECREF(emitted);
            continue;
        }
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            result = -1; /* a BaseException: the other sinks are skipped, as in finish */
            break;
        }
        PyObject *failure = fetch_exception();
        PyObject *reported = PyObject_CallFunctionObjArgs(g_sink_failed, sink, failure, NULL);
        if (reported == NULL) {
            chain_pending(failure);
            result = -1;
            break;
        }
        Py_DECREF(reported);
        Py_DECREF(failure);
    }
    t_in_sinks = 0;
    Py_DECREF(record);
    return result;

failed_to_build:
    t_in_sinks = 0;
    Py_XDECREF(offset);
    Py_XDECREF(start_ns);
    Py_XDECREF(duration);
    Py_XDECREF(error_type);
    Py_XDECREF(recorded_metadata);
    Py_XDECREF(snapshot);
    /* finish: `except Exception: report_internal_error("building an operation record")`. */
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyObject *problem = fetch_exception();
    PyObject *reported = PyObject_CallFunctionObjArgs(g_report, g_str_building, problem, NULL);
    if (reported == NULL) {
        chain_pending(problem);
        return -1;
    }
    Py_DECREF(reported);
    Py_DECREF(problem);
    return 0;
}

/* Record the finished call: the direct observer, or _emit.finish. 0, or -1 with an error. */
static int
record_call(Driver *self, long long start, long long end, PyObject *exc, PyObject *metadata)
{
    if (PyList_GET_SIZE(g_sinks) == 0) {
        return 0;
    }
    /* The operation's own filter, as finish applies it first: a call it drops is dropped
     * whatever else is configured, so the paths below see only what finish would keep of it
     * (they are set only when no process-wide filter is on). */
    if (self->min_duration_ns > 0 && end - start < self->min_duration_ns &&
        (exc == NULL || !self->keep_errors)) {
        return 0;
    }
    PyObject *observe = PyList_GET_ITEM(g_direct, 0);
    PyObject *result;
    if (observe != Py_None) {
        Py_INCREF(observe);
        PyObject *duration = PyLong_FromLongLong(end - start);
        if (duration == NULL) {
            Py_DECREF(observe);
            return -1;
        }
        result = PyObject_CallFunctionObjArgs(observe, self->name, duration,
                                              exc != NULL ? Py_True : Py_False, NULL);
        Py_DECREF(duration);
        if (result == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
            PyObject *failure = fetch_exception();
            result = PyObject_CallFunctionObjArgs(g_observer_failed, observe, failure, NULL);
            if (result == NULL) {
                chain_pending(failure);
            }
            else {
                Py_DECREF(failure);
            }
        }
        Py_DECREF(observe);
    }
    else if (g_record_path != NULL && PyList_GET_ITEM(g_record_path, 0) != Py_None) {
        PyObject *path = Py_NewRef(PyList_GET_ITEM(g_record_path, 0));
        int outcome = PyTuple_Check(path) && PyTuple_GET_SIZE(path) == 2
                          ? emit_record(self, path, start, end, exc, metadata)
                          : (PyErr_SetString(PyExc_TypeError, "unexpected record path"), -1);
        Py_DECREF(path);
        return outcome;
    }
    else {
        PyObject *start_ns = PyLong_FromLongLong(start);
        PyObject *end_ns = PyLong_FromLongLong(end);
        if (start_ns == NULL || end_ns == NULL) {
            Py_XDECREF(start_ns);
            Py_XDECREF(end_ns);
            return -1;
        }
        result = PyObject_CallFunctionObjArgs(g_finish, self->spec, start_ns, end_ns,
                                              exc != NULL ? exc : Py_None, metadata, NULL);
        Py_DECREF(start_ns);
        Py_DECREF(end_ns);
    }
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* `finally: var.reset(token)` with whatever error is pending: a failing reset replaces it,
 * chained to it, as in Python. Steals `token`. */
static void
reset_in_finally(PyObject *var, PyObject *token)
{
    if (token == NULL) {
        return;
    }
    PyObject *pending = fetch_exception();
    int failed = PyContextVar_Reset(var, token) < 0;
    Py_DECREF(token);
    if (failed) {
        chain_pending(pending);
    }
    else if (pending != NULL) {
        restore_exception(pending);
    }
}

/* A call as it reached the wrapper: a vector (argv, nargsf, kwnames: AspectWrapperBase's
 * vectorcall) or a tuple and a dict (tp_call, or the 4-argument driver convention). The tuple
 * and dict are made from the vector only where Python needs them: a snapshot update reading
 * the call, a Python driver. */
typedef struct {
    PyObject *const *argv; /* NULL: the call came as args/kwargs */
    size_t nargsf;
    PyObject *kwnames;
    PyObject *args;   /* a tuple, or NULL until made */
    PyObject *kwargs; /* a dict, or NULL (none given, or not made yet) */
    int made;         /* args and kwargs were made here: released by call_done */
} CallArgs;

/* Make args and kwargs (a fresh dict, as wrapt hands its drivers) of a call. 0, or -1. */
static int
call_materialize(CallArgs *call)
{
    if (call->argv == NULL) {
        if (call->kwargs == NULL) {
            call->kwargs = PyDict_New();
            if (call->kwargs == NULL) {
                return -1;
            }
            call->made = 1; /* the dict only: args belongs to the caller */
            Py_INCREF(call->args);
        }
        return 0;
    }
    if (call->args != NULL) {
        return 0;
    }
    Py_ssize_t nargs = PyVectorcall_NARGS(call->nargsf);
    Py_ssize_t nkw = call->kwnames == NULL ? 0 : PyTuple_GET_SIZE(call->kwnames);
    PyObject *args = PyTuple_New(nargs);
    PyObject *kwargs = PyDict_New();
    if (args == NULL || kwargs == NULL) {
        Py_XDECREF(args);
        Py_XDECREF(kwargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(args, i, Py_NewRef(call->argv[i]));
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(call->kwnames, i), call->argv[nargs + i]) <
            0) {
            Py_DECREF(args);
            Py_DECREF(kwargs);
            return -1;
        }
    }
    call->args = args;
    call->kwargs = kwargs;
    call->made = 1;
    return 0;
}

static void
call_done(CallArgs *call)
{
    if (call->made) {
        Py_CLEAR(call->args);
        Py_CLEAR(call->kwargs);
        call->made = 0;
    }
}

/* wrapped(*args, **kwargs), passing the vector through as received where there is one. */
static PyObject *
call_wrapped(PyObject *wrapped, CallArgs *call)
{
    if (call->argv != NULL) {
        return PyObject_Vectorcall(wrapped, call->argv, call->nargsf, call->kwnames);
    }
    return PyObject_Call(wrapped, call->args, call->kwargs);
}

/* The arguments a snapshot update is called with: the call's own where it reads them,
 * otherwise any tuple and dict (it never looks at them; see _compile.reads_call). */
static PyObject *g_empty_tuple = NULL, *g_empty_dict = NULL;

static int
update_arguments(Driver *self, CallArgs *call, PyObject **args, PyObject **kwargs)
{
    if (self->reads_call) {
        if (call_materialize(call) < 0) {
            return -1;
        }
        *args = call->args;
        *kwargs = call->kwargs;
    }
    else {
        *args = call->args != NULL ? call->args : g_empty_tuple;
        *kwargs = call->kwargs != NULL ? call->kwargs : g_empty_dict;
    }
    return 0;
}

static PyObject *driver_run(Driver *self, PyObject *wrapped, PyObject *instance,
                            CallArgs *call);

static PyObject *
Driver_vectorcall(Driver *self, PyObject *const *argv, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 4 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError,
                        "a driver takes (wrapped, instance, args, kwargs), positionally");
        return NULL;
    }
    PyObject *wrapped = argv[0], *instance = argv[1], *args = argv[2], *kwargs = argv[3];
    if (!PyTuple_Check(args) || !PyDict_Check(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "a driver takes a tuple of args and a dict of kwargs");
        return NULL;
    }
    CallArgs call = {NULL, 0, NULL, args, kwargs, 0};
    return driver_run(self, wrapped, instance, &call);
}

/* The driver's work (call_in_scope / call_timed_only / call_timed), for a call received in
 * either form. The caller releases what call_materialize made (call_done). */
static PyObject *
driver_run(Driver *self, PyObject *wrapped, PyObject *instance, CallArgs *call)
{
    if (g_disabled || g_sinks == NULL) {
        return call_wrapped(wrapped, call);
    }
    PyObject *snapshot_token = NULL;
    if (self->update != NULL) {
        PyObject *current = NULL, *args, *kwargs;
        if (update_arguments(self, call, &args, &kwargs) < 0 ||
            PyContextVar_Get(g_snapshot, NULL, &current) < 0) {
            return NULL;
        }
        PyObject *update_args[4] = {current != NULL ? current : Py_None, instance, args, kwargs};
        PyObject *pushed = PyObject_Vectorcall(self->update, update_args, 4, NULL);
        Py_XDECREF(current);
        if (pushed != NULL) {
            snapshot_token = PyContextVar_Set(g_snapshot, pushed);
            Py_DECREF(pushed);
        }
        if (snapshot_token == NULL && !fields_failed(self)) {
            return NULL;
        }
    }
    if (self->spec == NULL) {
        PyObject *result = call_wrapped(wrapped, call);
        reset_in_finally(g_snapshot, snapshot_token);
        if (result != NULL && PyErr_Occurred()) {
            Py_CLEAR(result);
        }
        return result;
    }
    PyObject *metadata = PyDict_New();
    if (metadata == NULL) {
        reset_in_finally(g_snapshot, snapshot_token);
        return NULL;
    }
    PyObject *operation_token = PyContextVar_Set(g_operation, metadata);
    long long start = 0, end = 0;
    if (operation_token == NULL || now_ns(&start) < 0) {
        Py_DECREF(metadata);
        reset_in_finally(g_operation, operation_token);
        reset_in_finally(g_snapshot, snapshot_token);
        return NULL;
    }
    PyObject *result = call_wrapped(wrapped, call);
    PyObject *exc = result == NULL ? fetch_exception() : NULL;
    int failed = now_ns(&end) < 0;
    if (!failed) {
        if (exc != NULL) {
            /* Sinks run while the body's exception is the one being handled, as they do
             * inside the Python driver's `except BaseException` block. */
            PyObject *saved_type, *saved_value, *saved_traceback;
            PyErr_GetExcInfo(&saved_type, &saved_value, &saved_traceback);
            PyErr_SetExcInfo(Py_NewRef((PyObject *)Py_TYPE(exc)), Py_NewRef(exc),
                             PyException_GetTraceback(exc));
            failed = record_call(self, start, end, exc, metadata) < 0;
            PyErr_SetExcInfo(saved_type, saved_value, saved_traceback);
        }
        else {
            failed = record_call(self, start, end, NULL, metadata) < 0;
        }
    }
    Py_DECREF(metadata);
    if (failed && exc != NULL) {
        chain_pending(Py_NewRef(exc));
    }
    reset_in_finally(g_operation, operation_token);
    reset_in_finally(g_snapshot, snapshot_token);
    if (PyErr_Occurred()) {
        Py_XDECREF(result);
        Py_XDECREF(exc);
        return NULL;
    }
    if (exc != NULL) {
        restore_exception(exc);
        return NULL;
    }
    return result;
}

/* The deferred driver's first call (and a call racing it): build, settle, go on. */
static PyObject *Driver_deferred_vectorcall(Driver *self, PyObject *const *argv, size_t nargsf,
                                            PyObject *kwnames);

static PyObject *
Driver_delegate_vectorcall(Driver *self, PyObject *const *argv, size_t nargsf,
                           PyObject *kwnames)
{
    return PyObject_Vectorcall(self->delegate, argv, nargsf, kwnames);
}

/* Build a deferred driver's plan and real driver (its first call), and settle: a compiled
 * driver is copied into this object, any other becomes its delegate. 0, or -1 with the
 * builder's BaseException (it reports an Exception itself). */
static int
driver_settle(Driver *self)
{
    /* The builder may let another thread in (it is Python): whoever settles first wins, a
     * later result is dropped; the object stays valid throughout. */
    PyObject *build = Py_NewRef(self->build);
    PyObject *build_args = Py_NewRef(self->build_args);
    PyObject *real = PyObject_Call(build, build_args, NULL);
    Py_DECREF(build);
    Py_DECREF(build_args);
    if (real == NULL) {
        return -1;
    }
    if (self->build != NULL) {
        if (Py_TYPE(real) == Py_TYPE(self) && ((Driver *)real)->build == NULL &&
            ((Driver *)real)->delegate == NULL) {
            Driver *built = (Driver *)real;
            Py_XSETREF(self->update, Py_XNewRef(built->update));
            Py_XSETREF(self->qualname, Py_NewRef(built->qualname));
            Py_XSETREF(self->spec, Py_XNewRef(built->spec));
            Py_XSETREF(self->name, Py_NewRef(built->name));
            self->min_duration_ns = built->min_duration_ns;
            self->keep_errors = built->keep_errors;
            self->reads_call = built->reads_call;
            self->vectorcall = (vectorcallfunc)Driver_vectorcall;
        }
        else {
            Py_XSETREF(self->delegate, Py_NewRef(real));
            self->vectorcall = (vectorcallfunc)Driver_delegate_vectorcall;
        }
        Py_CLEAR(self->build);
        Py_CLEAR(self->build_args);
    }
    Py_DECREF(real);
    return 0;
}

static PyObject *
Driver_deferred_vectorcall(Driver *self, PyObject *const *argv, size_t nargsf,
                           PyObject *kwnames)
{
    if (self->build != NULL && driver_settle(self) < 0) {
        return NULL;
    }
    if (self->vectorcall == (vectorcallfunc)Driver_deferred_vectorcall) {
        /* Cleared by the collector before its first call (its cycle is being freed and a
         * finaliser calls it): what it wrapped, called as is. */
        if (PyVectorcall_NARGS(nargsf) != 4 || !PyTuple_Check(argv[2]) || !PyDict_Check(argv[3])) {
            PyErr_SetString(PyExc_TypeError, "a driver takes (wrapped, instance, args, kwargs)");
            return NULL;
        }
        return PyObject_Call(argv[0], argv[2], argv[3]);
    }
    return self->vectorcall((PyObject *)self, argv, nargsf, kwnames);
}

static PyObject *
Driver_deferred(PyTypeObject *type, PyObject *args)
{
    PyObject *build, *build_args;
    if (!PyArg_ParseTuple(args, "OO!:deferred", &build, &PyTuple_Type, &build_args)) {
        return NULL;
    }
    if (!PyCallable_Check(build)) {
        PyErr_SetString(PyExc_TypeError, "Driver.deferred() needs a callable builder");
        return NULL;
    }
    Driver *self = (Driver *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->qualname = Py_NewRef(Py_None);
    self->name = Py_NewRef(Py_None);
    self->build = Py_NewRef(build);
    self->build_args = Py_NewRef(build_args);
    self->reads_call = 1;
    self->vectorcall = (vectorcallfunc)Driver_deferred_vectorcall;
    return (PyObject *)self;
}

/* An undone instrumentation (the ledger releasing a wrapper): calls go straight to what the
 * wrapper wraps, from C, so an escaped reference to it adds no Python frame either. */
static PyObject *
Driver_released_vectorcall(Driver *self, PyObject *const *argv, size_t nargsf,
                           PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 4 || !PyTuple_Check(argv[2]) || !PyDict_Check(argv[3])) {
        PyErr_SetString(PyExc_TypeError, "a driver takes (wrapped, instance, args, kwargs)");
        return NULL;
    }
    return PyObject_Call(argv[0], argv[2], argv[3]);
}

static PyObject *
Driver_release(Driver *self, PyObject *unused)
{
    /* A pending driver is never built now; a settled one forgets nothing it needs. */
    Py_CLEAR(self->build);
    Py_CLEAR(self->build_args);
    self->vectorcall = (vectorcallfunc)Driver_released_vectorcall;
    Py_RETURN_NONE;
}

/* Whether this driver still waits for its first call (for tests and diagnostics). */
static PyObject *
Driver_get_deferred(Driver *self, void *closure)
{
    return PyBool_FromLong(self->build != NULL);
}

static PyObject *
Driver_get_released(Driver *self, void *closure)
{
    return PyBool_FromLong(self->vectorcall == (vectorcallfunc)Driver_released_vectorcall);
}

static PyObject *
Driver_get_delegate(Driver *self, void *closure)
{
    return Py_NewRef(self->delegate != NULL ? self->delegate : Py_None);
}

static PyMethodDef Driver_methods[] = {
    {"deferred", (PyCFunction)Driver_deferred, METH_VARARGS | METH_CLASS,
     "Driver.deferred(build, args): a driver made by build(*args) at its first call."},
    {"release", (PyCFunction)Driver_release, METH_NOARGS,
     "From now on, call what the wrapper wraps, and nothing else."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Driver_getset[] = {
    {"pending", (getter)Driver_get_deferred, NULL, "Still waiting for its first call.", NULL},
    {"released", (getter)Driver_get_released, NULL, "Calls only what it wraps (undone).", NULL},
    {"delegate", (getter)Driver_get_delegate, NULL,
     "The Python driver a settled deferred driver calls, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *
Driver_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *update, *qualname, *spec, *name;
    long long min_duration_ns = 0;
    int keep_errors = 1, reads_call = 1;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) {
        PyErr_SetString(PyExc_TypeError, "Driver() takes its arguments positionally");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OUOO|p:Driver", &update, &qualname, &spec, &name,
                          &reads_call)) {
        return NULL;
    }
    if (spec != Py_None) {
        /* A TimingSpec: (name, kind, min_duration_ns, keep_errors). */
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 4) {
            PyErr_SetString(PyExc_TypeError, "a timed driver needs a TimingSpec");
            return NULL;
        }
        min_duration_ns = PyLong_AsLongLong(PyTuple_GET_ITEM(spec, 2));
        if (min_duration_ns == -1 && PyErr_Occurred()) {
            return NULL;
        }
        keep_errors = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 3));
        if (keep_errors < 0) {
            return NULL;
        }
    }
    if (update == Py_None && spec == Py_None) {
        PyErr_SetString(PyExc_ValueError, "a driver needs an update, a timing spec or both");
        return NULL;
    }
    if (spec != Py_None && !PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "a timed driver needs the operation name as a str");
        return NULL;
    }
    Driver *self = (Driver *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->update = update == Py_None ? NULL : Py_NewRef(update);
    self->qualname = Py_NewRef(qualname);
    self->spec = spec == Py_None ? NULL : Py_NewRef(spec);
    self->name = Py_NewRef(name);
    self->min_duration_ns = min_duration_ns;
    self->keep_errors = keep_errors;
    self->reads_call = reads_call;
    self->vectorcall = (vectorcallfunc)Driver_vectorcall;
    return (PyObject *)self;
}

static PyTypeObject DriverType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flext_ctx_aspects._speedups.Driver",
    .tp_basicsize = sizeof(Driver),
    .tp_dealloc = (destructor)Driver_dealloc,
    .tp_vectorcall_offset = offsetof(Driver, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Driver(update, qualname, spec, name, reads_call=True): a compiled sync driver.",
    .tp_new = Driver_new,
    .tp_traverse = (traverseproc)Driver_traverse,
    .tp_clear = (inquiry)Driver_clear,
    .tp_free = PyObject_GC_Del,
    .tp_methods = Driver_methods,
    .tp_getset = Driver_getset,
};

/* --- AspectWrapperBase: the wrapper's own call entry ---------------------------------------
 *
 * _engine.AspectWrapper is a Python subclass of wrapt's C _FunctionWrapperBase. wrapt's
 * __call__ is a tp_call: CPython makes an args tuple for it (and counts the call towards the
 * recursion limit), then it looks up wrapt's module state, takes five references, makes an
 * empty kwargs dict and calls the driver with (wrapped, instance, args, kwargs). This type
 * sits between the two: a subclass of wrapt's type with a vectorcall entry of its own, which
 * hands the call, as received, to a compiled driver (or, with the tuple and dict made, to a
 * Python driver). Whatever wrapt would do differently (an `enabled` switch, a bound
 * instance, a binding whose __self__ it probes, an uninitialised wrapper) goes to wrapt's
 * own __call__. The fields are read from wrapt's instance layout, mirrored here and checked
 * against a live wrapt object before the type is made (wrapper_base()). */

typedef struct {
    PyObject_HEAD
    PyObject *dict;
    PyObject *wrapped;
    PyObject *weakreflist;
    int init_called;
} WraptProxyLayout;

typedef struct {
    WraptProxyLayout proxy;
    PyObject *instance;
    PyObject *wrapper;
    PyObject *enabled;
    PyObject *binding;
    PyObject *parent;
    PyObject *owner;
} WraptWrapperLayout;

/* How the wrapper binds when read as an attribute (_engine._get_mode): GET_FUNCTION,
 * GET_STATIC, GET_WRAPT and GET_CLASSMETHOD are done here, the others by the Python method
 * `_bind_as_attribute`. Zero, the state of a fresh object, is a function's binding. */
enum {
    GET_FUNCTION = 0,
    GET_STATIC,
    GET_WRAPT,
    GET_DESCRIPTOR,
    GET_PARTIAL,
    GET_CLASSMETHOD,
    GET_MODES,
};

typedef struct {
    WraptWrapperLayout base;
    vectorcallfunc vectorcall;
    int get_mode;
} AspectWrapperBase;

static PyTypeObject *g_wrapper_base = NULL; /* the type made by wrapper_base() */
static ternaryfunc g_wrapt_call = NULL;     /* wrapt's __call__ */
static newfunc g_wrapt_new = NULL;
static PyObject *g_function_binding = NULL; /* _engine._FUNCTION_BINDING */
static descrgetfunc g_wrapt_descr_get = NULL;
static PyObject *g_get_modes = NULL; /* _engine's mode constants, in the enum's order */
static PyObject *g_str_bind = NULL;  /* "_bind_as_attribute" */
static PyObject *g_str_bound_function = NULL; /* "_self_bound_function" */

/* Whether wrapt's __call__ would call the driver with (wrapped, None, args, kwargs) as they
 * are: no `enabled` switch, unbound, and not a binding wrapt probes __self__ for. */
static int
wrapper_calls_driver_directly(WraptWrapperLayout *self)
{
    if (self->proxy.wrapped == NULL || self->wrapper == NULL || self->enabled != Py_None ||
        self->instance != Py_None || self->binding == NULL) {
        return 0;
    }
    PyObject *binding = self->binding;
    if (binding == g_function_binding) {
        return 1;
    }
    return PyUnicode_Check(binding) && PyUnicode_CompareWithASCIIString(binding, "function") &&
           PyUnicode_CompareWithASCIIString(binding, "instancemethod") &&
           PyUnicode_CompareWithASCIIString(binding, "callable") &&
           PyUnicode_CompareWithASCIIString(binding, "classmethod");
}

/* Call `driver` for `wrapped`: a compiled driver runs here, whatever its state; a Python one
 * gets the 4-argument convention. */
static PyObject *
wrapper_dispatch(PyObject *driver, PyObject *wrapped, CallArgs *call)
{
    PyObject *held = NULL;
    PyObject *result;
    while (Py_TYPE(driver) == &DriverType) {
        Driver *compiled = (Driver *)driver;
        vectorcallfunc how = compiled->vectorcall;
        if (how == (vectorcallfunc)Driver_vectorcall) {
            result = driver_run(compiled, wrapped, Py_None, call);
            goto done;
        }
        if (how == (vectorcallfunc)Driver_released_vectorcall) {
            result = call_wrapped(wrapped, call);
            goto done;
        }
        if (how == (vectorcallfunc)Driver_deferred_vectorcall) {
            if (compiled->build == NULL) {
                result = call_wrapped(wrapped, call); /* cleared by the collector */
                goto done;
            }
            if (driver_settle(compiled) < 0) {
                result = NULL;
                goto done;
            }
            continue;
        }
        if (how == (vectorcallfunc)Driver_delegate_vectorcall && compiled->delegate != NULL) {
            Py_XSETREF(held, Py_NewRef(compiled->delegate));
            driver = held;
            continue;
        }
        break;
    }
    if (call_materialize(call) < 0) {
        result = NULL;
        goto done;
    }
    PyObject *stack[4] = {wrapped, Py_None, call->args, call->kwargs};
    result = PyObject_Vectorcall(driver, stack, 4, NULL);
done:
    Py_XDECREF(held);
    return result;
}

static PyObject *
AspectWrapperBase_run(PyObject *self, CallArgs *call)
{
    WraptWrapperLayout *layout = (WraptWrapperLayout *)self;
    /* Held for the call: re-initialising the wrapper meanwhile cannot free them. */
    PyObject *wrapped = Py_NewRef(layout->proxy.wrapped);
    PyObject *driver = Py_NewRef(layout->wrapper);
    PyObject *result = wrapper_dispatch(driver, wrapped, call);
    call_done(call);
    Py_DECREF(wrapped);
    Py_DECREF(driver);
    return result;
}

static PyObject *
AspectWrapperBase_vectorcall(PyObject *self, PyObject *const *argv, size_t nargsf,
                             PyObject *kwnames)
{
    if (!wrapper_calls_driver_directly((WraptWrapperLayout *)self)) {
        /* wrapt's own __call__, with the tuple and dict it takes. */
        CallArgs call = {argv, nargsf, kwnames, NULL, NULL, 0};
        if (call_materialize(&call) < 0) {
            return NULL;
        }
        PyObject *result = g_wrapt_call(self, call.args, call.kwargs);
        call_done(&call);
        return result;
    }
    CallArgs call = {argv, nargsf, kwnames, NULL, NULL, 0};
    return AspectWrapperBase_run(self, &call);
}

static PyObject *
AspectWrapperBase_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    if (!wrapper_calls_driver_directly((WraptWrapperLayout *)self)) {
        return g_wrapt_call(self, args, kwargs);
    }
    CallArgs call = {NULL, 0, NULL, args, kwargs, 0};
    return AspectWrapperBase_run(self, &call);
}

static PyObject *
AspectWrapperBase_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *self = g_wrapt_new(type, args, kwargs);
    if (self != NULL) {
        ((AspectWrapperBase *)self)->vectorcall = AspectWrapperBase_vectorcall;
    }
    return self;
}

/* Attribute access binds here where the Python engine's __get__ would make a method, or
 * nothing: its frame and slot call cost several times the call itself on methods. */
static PyObject *
AspectWrapperBase_descr_get(PyObject *self, PyObject *instance, PyObject *owner)
{
    switch (((AspectWrapperBase *)self)->get_mode) {
    case GET_FUNCTION:
        if (instance == NULL || instance == Py_None) {
            return Py_NewRef(self);
        }
        return PyMethod_New(self, instance);
    case GET_STATIC:
        return Py_NewRef(self);
    case GET_WRAPT:
        return g_wrapt_descr_get(self, instance, owner);
    case GET_CLASSMETHOD: {
        /* What classmethod.__get__ makes (a method of the class), of the same driver's
         * wrapper around the classmethod's function (_engine._new_wrapper made it). */
        PyObject *dict = ((WraptWrapperLayout *)self)->proxy.dict;
        PyObject *function = NULL;
        if (dict != NULL) {
            function = PyDict_GetItemWithError(dict, g_str_bound_function);
            if (function == NULL && PyErr_Occurred()) {
                return NULL;
            }
        }
        if (function == NULL || (owner == NULL && instance == NULL)) {
            return g_wrapt_descr_get(self, instance, owner);
        }
        return PyMethod_New(function, owner != NULL ? owner : (PyObject *)Py_TYPE(instance));
    }
    default:
        return PyObject_CallMethodObjArgs(self, g_str_bind, instance ? instance : Py_None,
                                          owner ? owner : Py_None, NULL);
    }
}

static PyObject *
AspectWrapperBase_get_mode(PyObject *self, void *closure)
{
    return Py_NewRef(PyTuple_GET_ITEM(g_get_modes, ((AspectWrapperBase *)self)->get_mode));
}

static int
AspectWrapperBase_set_mode(PyObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        ((AspectWrapperBase *)self)->get_mode = GET_FUNCTION;
        return 0;
    }
    for (int mode = 0; mode < GET_MODES; mode++) {
        PyObject *known = PyTuple_GET_ITEM(g_get_modes, mode);
        int equal = value == known ? 1 : PyObject_RichCompareBool(value, known, Py_EQ);
        if (equal < 0) {
            return -1;
        }
        if (equal) {
            ((AspectWrapperBase *)self)->get_mode = mode;
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "_self_get: expected one of %R, got %R", g_get_modes, value);
    return -1;
}

static PyGetSetDef AspectWrapperBase_getset[] = {
    {"_self_get", AspectWrapperBase_get_mode, AspectWrapperBase_set_mode,
     "How the wrapper binds when read as an attribute.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef AspectWrapperBase_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(AspectWrapperBase, vectorcall), READONLY,
     NULL},
    {NULL, 0, 0, 0, NULL},
};

/* Whether `probe` (a wrapt FunctionWrapperBase made with these fields) has the mirrored
 * layout. */
static int
layout_matches(PyObject *probe, PyObject *wrapped, PyObject *driver, PyObject *binding)
{
    WraptWrapperLayout *layout = (WraptWrapperLayout *)probe;
    return Py_TYPE(probe)->tp_basicsize == (Py_ssize_t)sizeof(WraptWrapperLayout) &&
           layout->proxy.wrapped == wrapped && layout->wrapper == driver &&
           layout->instance == Py_None && layout->enabled == Py_None &&
           layout->binding == binding;
}

static PyObject *
wrapper_base(PyObject *module, PyObject *args)
{
    PyTypeObject *base;
    PyObject *binding, *probe_target, *modes;
    if (!PyArg_ParseTuple(args, "O!UOO!:wrapper_base", &PyType_Type, &base, &binding,
                          &probe_target, &PyTuple_Type, &modes)) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(modes) != GET_MODES) {
        PyErr_Format(PyExc_TypeError, "wrapper_base(): expected %d binding modes, got %zd",
                     GET_MODES, PyTuple_GET_SIZE(modes));
        return NULL;
    }
    if (base->tp_call == NULL || base->tp_new == NULL || base->tp_itemsize != 0 ||
        base->tp_descr_get == NULL ||
        base->tp_basicsize != (Py_ssize_t)sizeof(WraptWrapperLayout) ||
        !(base->tp_flags & Py_TPFLAGS_BASETYPE)) {
        PyErr_SetString(PyExc_TypeError, "wrapper_base(): not wrapt's FunctionWrapperBase layout");
        return NULL;
    }
    /* A live wrapt object made with known fields, read back through the mirrored layout. */
    PyObject *probe = PyObject_CallFunction((PyObject *)base, "OOOOO", probe_target, Py_None,
                                            probe_target, Py_None, binding);
    if (probe == NULL) {
        return NULL;
    }
    int matches = layout_matches(probe, probe_target, probe_target, binding);
    Py_DECREF(probe);
    if (!matches) {
        PyErr_SetString(PyExc_TypeError, "wrapper_base(): not wrapt's FunctionWrapperBase layout");
        return NULL;
    }
    if (g_wrapper_base != NULL) {
        /* One type per process: the drivers' shared state is process-wide too. */
        if (g_wrapper_base->tp_base != base) {
            PyErr_SetString(PyExc_TypeError, "wrapper_base(): already made for another base");
            return NULL;
        }
        return Py_NewRef((PyObject *)g_wrapper_base);
    }
    PyType_Slot slots[] = {
        {Py_tp_call, (void *)AspectWrapperBase_call},
        {Py_tp_new, (void *)AspectWrapperBase_new},
        {Py_tp_members, (void *)AspectWrapperBase_members},
        {Py_tp_getset, (void *)AspectWrapperBase_getset},
        {Py_tp_descr_get, (void *)AspectWrapperBase_descr_get},
        {Py_tp_doc, (void *)"wrapt's FunctionWrapperBase with a vectorcall entry for drivers."},
        {0, NULL},
    };
    PyType_Spec spec = {
        .name = "flext_ctx_aspects._speedups.AspectWrapperBase",
        .basicsize = (int)sizeof(AspectWrapperBase),
        .itemsize = 0,
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_VECTORCALL,
        .slots = slots,
    };
    PyObject *bases = PyTuple_Pack(1, (PyObject *)base);
    if (bases == NULL) {
        return NULL;
    }
    PyObject *type = PyType_FromSpecWithBases(&spec, bases);
    Py_DECREF(bases);
    if (type == NULL) {
        return NULL;
    }
    if (g_str_bind == NULL) {
        g_str_bind = PyUnicode_InternFromString("_bind_as_attribute");
        g_str_bound_function = PyUnicode_InternFromString("_self_bound_function");
        if (g_str_bind == NULL || g_str_bound_function == NULL) {
            Py_DECREF(type);
            return NULL;
        }
    }
    g_wrapt_call = base->tp_call;
    g_wrapt_new = base->tp_new;
    g_wrapt_descr_get = base->tp_descr_get;
    Py_XSETREF(g_get_modes, Py_NewRef(modes));
    Py_XSETREF(g_function_binding, Py_NewRef(binding));
    g_wrapper_base = (PyTypeObject *)Py_NewRef(type);
    return type;
}

/* A Python subclass of AspectWrapperBase calls through its vectorcall entry too. 3.12+ does
 * this itself for subclasses that do not define __call__; before 3.12 CPython never sets the
 * flag on a class statement's type. */
static PyObject *
adopt_wrapper_type(PyObject *module, PyObject *arg)
{
    if (g_wrapper_base == NULL || !PyType_Check(arg) ||
        !PyType_IsSubtype((PyTypeObject *)arg, g_wrapper_base)) {
        PyErr_SetString(PyExc_TypeError, "adopt_wrapper_type() needs a subclass of wrapper_base()");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)arg;
    if (type->tp_call != AspectWrapperBase_call) {
        PyErr_SetString(PyExc_TypeError, "adopt_wrapper_type(): the class defines __call__");
        return NULL;
    }
    type->tp_vectorcall_offset = offsetof(AspectWrapperBase, vectorcall);
    type->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
    PyType_Modified(type);
    Py_RETURN_NONE;
}

static PyObject *
configure_drivers(PyObject *module, PyObject *args)
{
    PyObject *sinks, *direct, *finish, *observer_failed, *report, *snapshot, *operation, *clock;
    if (!PyArg_ParseTuple(args, "O!O!OOOOOO", &PyList_Type, &sinks, &PyList_Type, &direct,
                          &finish, &observer_failed, &report, &snapshot, &operation, &clock)) {
        return NULL;
    }
    if (PyList_GET_SIZE(direct) != 1 || !PyContextVar_CheckExact(snapshot) ||
        !PyContextVar_CheckExact(operation)) {
        PyErr_SetString(PyExc_TypeError, "configure_drivers(): unexpected shared state");
        return NULL;
    }
    Py_XSETREF(g_sinks, Py_NewRef(sinks));
    Py_XSETREF(g_direct, Py_NewRef(direct));
    Py_XSETREF(g_finish, Py_NewRef(finish));
    Py_XSETREF(g_observer_failed, Py_NewRef(observer_failed));
    Py_XSETREF(g_report, Py_NewRef(report));
    Py_XSETREF(g_snapshot, Py_NewRef(snapshot));
    Py_XSETREF(g_operation, Py_NewRef(operation));
    Py_XSETREF(g_clock, Py_NewRef(clock));
    Py_RETURN_NONE;
}

static PyObject *
configure_records(PyObject *module, PyObject *args)
{
    PyObject *record_path, *emitting, *wall, *sink_failed, *record_type, *frozen, *empty;
    PyObject *time_ns;
    long long resync;
    if (!PyArg_ParseTuple(args, "O!O!O!OO!OOOL", &PyList_Type, &record_path, &PySet_Type,
                          &emitting, &PyList_Type, &wall, &sink_failed, &PyType_Type,
                          &record_type, &frozen, &empty, &time_ns, &resync)) {
        return NULL;
    }
    if (PyList_GET_SIZE(record_path) != 1 || PyList_GET_SIZE(wall) != 2 ||
        !PyType_IsSubtype((PyTypeObject *)record_type, &PyTuple_Type) ||
        ((PyTypeObject *)record_type)->tp_basicsize != PyTuple_Type.tp_basicsize ||
        ((PyTypeObject *)record_type)->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError, "configure_records(): unexpected shared state");
        return NULL;
    }
    if (g_str_ok == NULL) {
        g_str_ok = PyUnicode_InternFromString("ok");
        g_str_error = PyUnicode_InternFromString("error");
        g_str_emit = PyUnicode_InternFromString("emit");
        g_str_building = PyUnicode_InternFromString("building an operation record");
        g_str_qualname = PyUnicode_InternFromString("__qualname__");
        if (!g_str_ok || !g_str_error || !g_str_emit || !g_str_building || !g_str_qualname) {
            return NULL;
        }
    }
    Py_XSETREF(g_record_path, Py_NewRef(record_path));
    Py_XSETREF(g_emitting, Py_NewRef(emitting));
    Py_XSETREF(g_wall, Py_NewRef(wall));
    Py_XSETREF(g_sink_failed, Py_NewRef(sink_failed));
    Py_XSETREF(g_record_type, Py_NewRef(record_type));
    Py_XSETREF(g_frozen, Py_NewRef(frozen));
    Py_XSETREF(g_empty_mapping, Py_NewRef(empty));
    Py_XSETREF(g_time_ns, Py_NewRef(time_ns));
    g_wall_resync_ns = resync;
    Py_RETURN_NONE;
}

static PyObject *
in_sinks(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(t_in_sinks);
}

static PyObject *
set_disabled(PyObject *module, PyObject *arg)
{
    int value = PyObject_IsTrue(arg);
    if (value < 0) {
        return NULL;
    }
    g_disabled = value;
    Py_RETURN_NONE;
}

static PyObject *
set_multiplier(PyObject *module, PyObject *arg)
{
    double value = PyFloat_AsDouble(arg);
    if (value == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(value > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "the bin key multiplier must be > 0");
        return NULL;
    }
    multiplier = value;
    Py_RETURN_NONE;
}

static PyObject *
bin_key(PyObject *module, PyObject *arg)
{
    long long value = PyLong_AsLongLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (value <= 0) {
        PyErr_SetString(PyExc_ValueError, "bin_key() needs a positive duration");
        return NULL;
    }
    return PyLong_FromLongLong((long long)ceil(log2((double)value) * multiplier));
}

static PyMethodDef module_methods[] = {
    {"set_multiplier", set_multiplier, METH_O, "Set the bin key multiplier (once, at import)."},
    {"bin_key", bin_key, METH_O, "The bin key add() computes for a positive duration."},
    {"configure_drivers", configure_drivers, METH_VARARGS,
     "Hand the drivers the engine's shared state (once, at import of _engine)."},
    {"set_disabled", set_disabled, METH_O, "set_enabled(False) / (True), for the drivers."},
    {"in_sinks", in_sinks, METH_NOARGS,
     "Whether this thread runs sinks from the compiled record path (finish's guard)."},
    {"wrapper_base", wrapper_base, METH_VARARGS,
     "wrapper_base(wrapt_base, function_binding, probe, get_modes): the wrapper type with a "
     "vectorcall entry and a __get__ of its own (once, at import of _engine)."},
    {"adopt_wrapper_type", adopt_wrapper_type, METH_O,
     "Give a Python subclass of wrapper_base() its vectorcall entry (before 3.12)."},
    {"configure_updates", configure_updates, METH_VARARGS,
     "Hand the update programs _ids' and _trace's shared state (once, at import of _engine)."},
    {"configure_records", configure_records, METH_VARARGS,
     "Hand the drivers _emit's record path state (once, at import of _engine)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "flext_ctx_aspects._speedups",
    .m_doc = "Compiled parts of flext_ctx_aspects (optional; see flext_ctx_aspects._native).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&DigestCoreType) < 0 || PyType_Ready(&DriverType) < 0 ||
        PyType_Ready(&UpdateType) < 0) {
        return NULL;
    }
    g_empty_tuple = PyTuple_New(0);
    g_empty_dict = PyDict_New();
    if (g_empty_tuple == NULL || g_empty_dict == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&DigestCoreType);
    if (PyModule_AddObject(module, "DigestCore", (PyObject *)&DigestCoreType) < 0) {
        Py_DECREF(&DigestCoreType);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "ABI", SPEEDUPS_ABI) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&DriverType);
    if (PyModule_AddObject(module, "Driver", (PyObject *)&DriverType) < 0) {
        Py_DECREF(&DriverType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&UpdateType);
    if (PyModule_AddObject(module, "Update", (PyObject *)&UpdateType) < 0) {
        Py_DECREF(&UpdateType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
