/*
 * proxystore._cproxy: the optional compiled accelerator of proxystore.proxy.
 *
 * proxystore/proxy.py is the reference implementation and stays complete on
 * its own. This module gives it one C base type, ProxyBase, whose slots
 * forward an operation to the proxy's target with no Python frame in
 * between: the pure-Python special methods each cost a Python call.
 *
 * What stays in Python: resolving (locking, retyping, errors), repr, pickling,
 * copying, setting attributes, in-place operators and the rarely used special
 * methods. An unresolved proxy takes the slow path: the slots call
 * proxystore.proxy._resolve, registered with _setup().
 *
 * Special methods a proxy has only when its target's type has them (calling,
 * len, iteration, indexing, numeric conversions, ...) must not be inherited
 * by every proxy class: callable(), iter() and the collections.abc checks
 * look at type(p). Module init therefore removes their wrapper descriptors
 * from ProxyBase's dict and hands them to Python in SLOTS; proxy.py puts them
 * in the namespace of the per-target-type classes that need them. Because
 * each descriptor wraps a C function of ProxyBase, a subclass that holds it
 * gets that C function in its slot, not the generic slot_* wrapper that
 * would call back into Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* Bumped when proxy.py and this file must change together; proxy.py ignores
 * a stale build (e.g. a .so left by an older editable install). */
#define CPROXY_API 1

typedef struct {
    PyObject_HEAD
    PyObject *factory;
    PyObject *target;
    PyObject *lock;
    PyObject *weakrefs;
} ProxyObject;

static PyTypeObject ProxyBase_Type;

/* Set by _setup(): proxy.py's _UNSET sentinel, its _resolve() and _OWN names. */
static PyObject *unset = NULL;
static PyObject *resolver = NULL;
static PyObject *own_names = NULL;
static PyObject *str_class = NULL;
static PyObject *str_target_type = NULL;

static PyObject *proxy_getattro(PyObject *self, PyObject *name);

/* Every proxy class has the C getattro unless a subclass replaced it: test
 * that first, the subclass walk of PyObject_TypeCheck second. */
#define IS_PROXY(o)                                 \
    (Py_TYPE(o)->tp_getattro == proxy_getattro ||   \
     PyObject_TypeCheck((o), &ProxyBase_Type))

/* Which operand of a binary slot is the proxy: the left one unless only the
 * right one is (the reflected case, e.g. 1 + proxy). */
static inline int
left_is_proxy(PyObject *left, PyObject *right)
{
    if (Py_TYPE(left)->tp_getattro == proxy_getattro) {
        return 1;
    }
    if (Py_TYPE(right)->tp_getattro == proxy_getattro) {
        return 0;
    }
    return PyObject_TypeCheck(left, &ProxyBase_Type);
}

static PyObject *
resolve_slow(PyObject *self)
{
    if (resolver == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "proxystore._cproxy is used before proxystore.proxy set it up; "
                        "import proxystore.proxy first.");
        return NULL;
    }
    return PyObject_CallOneArg(resolver, self);
}

/* A new reference to the target, resolving the proxy first if needed.
 *
 * BORROWED: the four query slots (len, bool, hash, []) use the target without
 * a reference of their own, as lazy-object-proxy and wrapt do in every slot;
 * that lets the compiler jump straight into the target's own slot, which is
 * what puts them under lazy-object-proxy's cost. The target stays alive as
 * long as the proxy holds it: Python code that the target's operation calls
 * back (a Python __len__, a dict key's __eq__) holds its own reference to the
 * object it runs on, and a proxy's target is replaced only by Python code that
 * sets or deletes __wrapped__ or applies an in-place operator. Replacing the
 * target of the very proxy being queried from inside such a callback, when
 * nothing else references the old target, is not supported. Every other slot
 * holds a reference while the target's operation runs. */
static inline PyObject *
target_of(PyObject *self)
{
    PyObject *target = ((ProxyObject *)self)->target;
    if (target != NULL && target != unset) {
        Py_INCREF(target);
        return target;
    }
    return resolve_slow(self);
}

/* -- object protocol ------------------------------------------------------------------ */

/* Whether ``name`` belongs to the proxy itself (proxy.py's _OWN); -1 on error. */
static int
is_own(PyObject *name)
{
    if (!PyUnicode_Check(name) || PyUnicode_GET_LENGTH(name) < 4 ||
        PyUnicode_READ_CHAR(name, 0) != '_' || PyUnicode_READ_CHAR(name, 1) != '_') {
        return 0;
    }
    return own_names == NULL ? 0 : PySet_Contains(own_names, name);
}

static PyObject *
proxy_getattro(PyObject *self, PyObject *name)
{
    int own = is_own(name);
    if (own < 0) {
        return NULL;
    }
    if (own) {
        return PyObject_GenericGetAttr(self, name);
    }
    PyObject *target = ((ProxyObject *)self)->target;
    if (target != NULL && target != unset) {
        Py_INCREF(target);
    }
    else {
        PyObject *factory = ((ProxyObject *)self)->factory;
        if (factory != NULL && PyUnicode_Check(name) &&
            PyUnicode_Compare(name, str_class) == 0) {
            /* isinstance() asks for __class__: answer from the factory's
             * knowledge of the type, without fetching the target. */
            PyObject *cls = PyObject_CallMethodNoArgs(factory, str_target_type);
            if (cls == NULL) {
                return NULL;
            }
            if (cls != Py_None) {
                return cls;
            }
            Py_DECREF(cls);
        }
        target = resolve_slow(self);
        if (target == NULL) {
            return NULL;
        }
    }
    PyObject *result = PyObject_GetAttr(target, name);
    Py_DECREF(target);
    return result;
}

static const int swapped_op[] = {Py_GT, Py_GE, Py_EQ, Py_NE, Py_LT, Py_LE};
static const char *const op_symbol[] = {"<", "<=", "==", "!=", ">", ">="};

/* PyObject_RichCompare(target, other, op) when both have the same type: the
 * steps of CPython's do_richcompare for that case, without its dispatch. */
static PyObject *
richcompare_same_type(PyObject *target, PyObject *other, int op, richcmpfunc compare)
{
    PyObject *result = compare(target, other, op);
    if (result != Py_NotImplemented) {
        return result;
    }
    Py_DECREF(result);
    result = compare(other, target, swapped_op[op]);
    if (result != Py_NotImplemented) {
        return result;
    }
    Py_DECREF(result);
    switch (op) {
    case Py_EQ:
        return PyBool_FromLong(target == other);
    case Py_NE:
        return PyBool_FromLong(target != other);
    default:
        return PyErr_Format(PyExc_TypeError,
                            "'%s' not supported between instances of '%.100s' and '%.100s'",
                            op_symbol[op], Py_TYPE(target)->tp_name, Py_TYPE(other)->tp_name);
    }
}

static PyObject *
proxy_richcompare(PyObject *self, PyObject *other, int op)
{
    PyObject *target = target_of(self);
    if (target == NULL) {
        return NULL;
    }
    PyObject *result;
    richcmpfunc compare = Py_TYPE(target)->tp_richcompare;
    if (Py_IS_TYPE(other, Py_TYPE(target)) && compare != NULL) {
        result = richcompare_same_type(target, other, op, compare);
    }
    else {
        result = PyObject_RichCompare(target, other, op);
    }
    Py_DECREF(target);
    return result;
}

static Py_hash_t
proxy_hash(PyObject *self)
{
    /* Borrows the target: see BORROWED. */
    PyObject *target = ((ProxyObject *)self)->target;
    if (target != NULL && target != unset) {
        hashfunc hash = Py_TYPE(target)->tp_hash;
        return hash != NULL ? hash(target) : PyObject_Hash(target);
    }
    if ((target = target_of(self)) == NULL) {
        return -1;
    }
    Py_hash_t result = PyObject_Hash(target);
    Py_DECREF(target);
    return result;
}

static PyObject *
proxy_str(PyObject *self)
{
    PyObject *target = target_of(self);
    if (target == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_Str(target);
    Py_DECREF(target);
    return result;
}

static PyObject *
proxy_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *target = target_of(self);
    if (target == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_Call(target, args, kwargs);
    Py_DECREF(target);
    return result;
}

static PyObject *
proxy_iter(PyObject *self)
{
    PyObject *target = target_of(self);
    if (target == NULL) {
        return NULL;
    }
    /* The slot directly: the caller (iter(), for) checks that it returned an iterator. */
    getiterfunc iter = Py_TYPE(target)->tp_iter;
    PyObject *result = iter != NULL ? iter(target) : PyObject_GetIter(target);
    Py_DECREF(target);
    return result;
}

static PyObject *
proxy_iternext(PyObject *self)
{
    PyObject *target = target_of(self);
    if (target == NULL) {
        return NULL;
    }
    PyObject *result = NULL;
    if (!PyIter_Check(target)) {
        PyErr_Format(PyExc_TypeError, "'%.200s' object is not an iterator",
                     Py_TYPE(target)->tp_name);
    }
    else {
        /* Directly, like next(): a StopIteration (and its value) passes through. */
        result = (*Py_TYPE(target)->tp_iternext)(target);
    }
    Py_DECREF(target);
    return result;
}

/* -- mapping and sequence --------------------------------------------------------------- */

static Py_ssize_t
proxy_length(PyObject *self)
{
    /* Borrows the target: see BORROWED. */
    PyObject *target = ((ProxyObject *)self)->target;
    if (target != NULL && target != unset) {
        PySequenceMethods *sequence = Py_TYPE(target)->tp_as_sequence;
        if (sequence != NULL && sequence->sq_length != NULL) {
            return sequence->sq_length(target);
        }
    }
    if ((target = target_of(self)) == NULL) {
        return -1;
    }
    Py_ssize_t result = PyObject_Size(target);
    Py_DECREF(target);
    return result;
}

static PyObject *
proxy_getitem(PyObject *self, PyObject *key)
{
    /* Borrows the target: see BORROWED. */
    PyObject *target = ((ProxyObject *)self)->target;
    if (target != NULL && target != unset) {
        PyMappingMethods *mapping = Py_TYPE(target)->tp_as_mapping;
        return mapping != NULL && mapping->mp_subscript != NULL
                   ? mapping->mp_subscript(target, key)
                   : PyObject_GetItem(target, key);
    }
    if ((target = target_of(self)) == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_GetItem(target, key);
    Py_DECREF(target);
    return result;
}

static int
proxy_setitem(PyObject *self, PyObject *key, PyObject *value)
{
    PyObject *target = target_of(self);
    if (target == NULL) {
        return -1;
    }
    int result = value == NULL ? PyObject_DelItem(target, key)
                               : PyObject_SetItem(target, key, value);
    Py_DECREF(target);
    return result;
}

/* sq_item and sq_ass_item exist so that a class holding __getitem__ or
 * __setitem__ also gets the generic sequence slots (as a Python class does):
 * with two candidates CPython fills them with slot_sq_item/slot_sq_ass_item,
 * which reversed() and iteration through __getitem__ alone need. */
static PyObject *
proxy_sq_item(PyObject *self, Py_ssize_t index)
{
    PyObject *target = target_of(self);
    if (target == NULL) {
        return NULL;
    }
    PyObject *result = PySequence_GetItem(target, index);
    Py_DECREF(target);
    return result;
}

static int
proxy_sq_ass_item(PyObject *self, Py_ssize_t index, PyObject *value)
{
    PyObject *target = target_of(self);
    if (target == NULL) {
        return -1;
    }
    int result = value == NULL ? PySequence_DelItem(target, index)
                               : PySequence_SetItem(target, index, value);
    Py_DECREF(target);
    return result;
}

static int
proxy_contains(PyObject *self, PyObject *value)
{
    PyObject *target = target_of(self);
    if (target == NULL) {
        return -1;
    }
    int result = PySequence_Contains(target, value);
    Py_DECREF(target);
    return result;
}

/* -- numbers ----------------------------------------------------------------------------- */

/* Binary operators: the proxy may be either operand (the slot serves both
 * __op__ and __rop__); as in proxy.py, only that operand is replaced. */
#define PROXY_BINARY(NAME, CALL)                                  \
    static PyObject *proxy_##NAME(PyObject *left, PyObject *right) \
    {                                                              \
        PyObject *target, *result;                                 \
        if (left_is_proxy(left, right)) {                          \
            if ((target = target_of(left)) == NULL) {              \
                return NULL;                                       \
            }                                                      \
            result = CALL(target, right);                          \
        }                                                          \
        else {                                                     \
            if ((target = target_of(right)) == NULL) {             \
                return NULL;                                       \
            }                                                      \
            result = CALL(left, target);                           \
        }                                                          \
        Py_DECREF(target);                                         \
        return result;                                             \
    }

PROXY_BINARY(add, PyNumber_Add)
PROXY_BINARY(subtract, PyNumber_Subtract)
PROXY_BINARY(multiply, PyNumber_Multiply)
PROXY_BINARY(matrix_multiply, PyNumber_MatrixMultiply)
PROXY_BINARY(true_divide, PyNumber_TrueDivide)
PROXY_BINARY(floor_divide, PyNumber_FloorDivide)
PROXY_BINARY(remainder, PyNumber_Remainder)
PROXY_BINARY(divmod, PyNumber_Divmod)
PROXY_BINARY(lshift, PyNumber_Lshift)
PROXY_BINARY(rshift, PyNumber_Rshift)
PROXY_BINARY(and, PyNumber_And)
PROXY_BINARY(xor, PyNumber_Xor)
PROXY_BINARY(or, PyNumber_Or)

static PyObject *
proxy_power(PyObject *base, PyObject *exponent, PyObject *modulo)
{
    PyObject *target, *result;
    if (IS_PROXY(base)) {
        if ((target = target_of(base)) == NULL) {
            return NULL;
        }
        result = PyNumber_Power(target, exponent, modulo);
    }
    else if (IS_PROXY(exponent)) {
        if ((target = target_of(exponent)) == NULL) {
            return NULL;
        }
        result = PyNumber_Power(base, target, modulo);
    }
    else {
        /* pow(a, b, proxy): Python's own classes do not support it either. */
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_DECREF(target);
    return result;
}

#define PROXY_UNARY(NAME, CALL)                    \
    static PyObject *proxy_##NAME(PyObject *self)  \
    {                                              \
        PyObject *target = target_of(self);        \
        if (target == NULL) {                      \
            return NULL;                           \
        }                                          \
        PyObject *result = CALL(target);           \
        Py_DECREF(target);                         \
        return result;                             \
    }

PROXY_UNARY(negative, PyNumber_Negative)
PROXY_UNARY(positive, PyNumber_Positive)
PROXY_UNARY(invert, PyNumber_Invert)
PROXY_UNARY(absolute, PyNumber_Absolute)
PROXY_UNARY(int, PyNumber_Long)
PROXY_UNARY(float, PyNumber_Float)
PROXY_UNARY(index, PyNumber_Index)

/* PyObject_IsTrue(), inline. */
static inline int
truth(PyObject *target)
{
    PyTypeObject *type = Py_TYPE(target);
    Py_ssize_t result;
    if (target == Py_True) {
        return 1;
    }
    if (target == Py_False || target == Py_None) {
        return 0;
    }
    if (type->tp_as_number != NULL && type->tp_as_number->nb_bool != NULL) {
        return type->tp_as_number->nb_bool(target);
    }
    if (type->tp_as_mapping != NULL && type->tp_as_mapping->mp_length != NULL) {
        result = type->tp_as_mapping->mp_length(target);
    }
    else if (type->tp_as_sequence != NULL && type->tp_as_sequence->sq_length != NULL) {
        result = type->tp_as_sequence->sq_length(target);
    }
    else {
        return 1;
    }
    return result > 0 ? 1 : (int)result;
}

static int
proxy_bool(PyObject *self)
{
    /* Borrows the target: see BORROWED. */
    PyObject *target = ((ProxyObject *)self)->target;
    if (target != NULL && target != unset) {
        return truth(target);
    }
    if ((target = target_of(self)) == NULL) {
        return -1;
    }
    int result = truth(target);
    Py_DECREF(target);
    return result;
}

/* -- the type ------------------------------------------------------------------------- */

static int
proxy_traverse(ProxyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->factory);
    Py_VISIT(self->target);
    Py_VISIT(self->lock);
    return 0;
}

static int
proxy_clear(ProxyObject *self)
{
    Py_CLEAR(self->factory);
    Py_CLEAR(self->target);
    Py_CLEAR(self->lock);
    return 0;
}

static void
proxy_dealloc(ProxyObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    proxy_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef proxy_members[] = {
    {"__proxy_factory__", T_OBJECT_EX, offsetof(ProxyObject, factory), 0, NULL},
    {"__proxy_target__", T_OBJECT_EX, offsetof(ProxyObject, target), 0, NULL},
    {"__proxy_lock__", T_OBJECT_EX, offsetof(ProxyObject, lock), 0, NULL},
    {NULL},
};

static PyNumberMethods proxy_as_number = {
    .nb_add = proxy_add,
    .nb_subtract = proxy_subtract,
    .nb_multiply = proxy_multiply,
    .nb_remainder = proxy_remainder,
    .nb_divmod = proxy_divmod,
    .nb_power = proxy_power,
    .nb_negative = proxy_negative,
    .nb_positive = proxy_positive,
    .nb_absolute = proxy_absolute,
    .nb_bool = proxy_bool,
    .nb_invert = proxy_invert,
    .nb_lshift = proxy_lshift,
    .nb_rshift = proxy_rshift,
    .nb_and = proxy_and,
    .nb_xor = proxy_xor,
    .nb_or = proxy_or,
    .nb_int = proxy_int,
    .nb_float = proxy_float,
    .nb_floor_divide = proxy_floor_divide,
    .nb_true_divide = proxy_true_divide,
    .nb_index = proxy_index,
    .nb_matrix_multiply = proxy_matrix_multiply,
};

static PyMappingMethods proxy_as_mapping = {
    .mp_length = proxy_length,
    .mp_subscript = proxy_getitem,
    .mp_ass_subscript = proxy_setitem,
};

static PySequenceMethods proxy_as_sequence = {
    .sq_length = proxy_length,
    .sq_item = proxy_sq_item,
    .sq_ass_item = proxy_sq_ass_item,
    .sq_contains = proxy_contains,
};

static PyTypeObject ProxyBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "proxystore._cproxy.ProxyBase",
    .tp_doc = PyDoc_STR("Compiled slots of proxystore.proxy.Proxy (not used directly)."),
    .tp_basicsize = sizeof(ProxyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)proxy_dealloc,
    .tp_traverse = (traverseproc)proxy_traverse,
    .tp_clear = (inquiry)proxy_clear,
    .tp_free = PyObject_GC_Del,
    .tp_weaklistoffset = offsetof(ProxyObject, weakrefs),
    .tp_members = proxy_members,
    .tp_getattro = proxy_getattro,
    .tp_richcompare = proxy_richcompare,
    .tp_hash = proxy_hash,
    .tp_str = proxy_str,
    .tp_call = proxy_call,
    .tp_iter = proxy_iter,
    .tp_iternext = proxy_iternext,
    .tp_as_number = &proxy_as_number,
    .tp_as_mapping = &proxy_as_mapping,
    .tp_as_sequence = &proxy_as_sequence,
};

/* Special methods a proxy class has only if its target's type has them
 * (proxy.py's _OPTIONAL): moved from ProxyBase's dict to SLOTS. */
static const char *optional_names[] = {
    "__call__", "__iter__", "__next__", "__len__", "__getitem__", "__setitem__",
    "__delitem__", "__contains__", "__int__", "__float__", "__index__", "__abs__",
    NULL,
};

/* -- module ---------------------------------------------------------------------------- */

static PyObject *
cproxy_setup(PyObject *module, PyObject *args)
{
    PyObject *new_unset, *new_resolver, *names;
    if (!PyArg_ParseTuple(args, "OOO!:_setup", &new_unset, &new_resolver, &PyFrozenSet_Type,
                          &names)) {
        return NULL;
    }
    if (!PyCallable_Check(new_resolver)) {
        PyErr_SetString(PyExc_TypeError, "_setup() needs a callable resolver");
        return NULL;
    }
    Py_INCREF(new_unset);
    Py_INCREF(new_resolver);
    Py_INCREF(names);
    Py_XSETREF(unset, new_unset);
    Py_XSETREF(resolver, new_resolver);
    Py_XSETREF(own_names, names);
    Py_RETURN_NONE;
}

static PyMethodDef cproxy_methods[] = {
    {"_setup", cproxy_setup, METH_VARARGS,
     PyDoc_STR("_setup(unset, resolve, own_names): connect the slots to proxystore.proxy.")},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cproxy_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "proxystore._cproxy",
    .m_doc = PyDoc_STR("Compiled slots for proxystore.proxy (optional accelerator)."),
    .m_size = -1,
    .m_methods = cproxy_methods,
};

/* The descriptors moved out of ProxyBase's dict (kept if init runs again). */
static PyObject *optional_slots = NULL;

static PyObject *
take_optional_slots(void)
{
    if (optional_slots != NULL) {
        return optional_slots;
    }
    PyObject *slots = PyDict_New();
    if (slots == NULL) {
        return NULL;
    }
    PyObject *dict = ProxyBase_Type.tp_dict;
    for (const char **name = optional_names; *name != NULL; name++) {
        PyObject *descr = PyDict_GetItemString(dict, *name); /* borrowed */
        if (descr == NULL || PyDict_SetItemString(slots, *name, descr) < 0 ||
            PyDict_DelItemString(dict, *name) < 0) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_ImportError, "ProxyBase has no %s", *name);
            }
            Py_DECREF(slots);
            return NULL;
        }
    }
    PyType_Modified(&ProxyBase_Type);
    optional_slots = slots;
    return optional_slots;
}

PyMODINIT_FUNC
PyInit__cproxy(void)
{
    /* object.__new__(cls) must accept the proxy classes (proxy.py calls it). */
    ProxyBase_Type.tp_new = PyBaseObject_Type.tp_new;
    if (PyType_Ready(&ProxyBase_Type) < 0) {
        return NULL;
    }
    if (str_class == NULL) {
        str_class = PyUnicode_InternFromString("__class__");
        str_target_type = PyUnicode_InternFromString("target_type");
        if (str_class == NULL || str_target_type == NULL) {
            return NULL;
        }
    }
    PyObject *slots = take_optional_slots();
    if (slots == NULL) {
        return NULL;
    }
    Py_INCREF(slots);

    PyObject *module = PyModule_Create(&cproxy_module);
    if (module == NULL) {
        Py_DECREF(slots);
        return NULL;
    }
    Py_INCREF(&ProxyBase_Type);
    if (PyModule_AddObject(module, "ProxyBase", (PyObject *)&ProxyBase_Type) < 0) {
        Py_DECREF(&ProxyBase_Type);
        Py_DECREF(slots);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddObject(module, "SLOTS", slots) < 0) {
        Py_DECREF(slots);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "API", CPROXY_API) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
