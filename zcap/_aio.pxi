# Async iteration over a Ring, without an event-loop round trip while data is ready.
#
# Included by _ring.pyx.  `async for pkt in cap` calls __anext__() and awaits
# the result.  _AsyncIter is its own iterator, awaitable and await-iterator,
# and it implements the am_send slot (Python >= 3.10): when a packet is ready
# the await completes inside that one C call - no coroutine object, no
# StopIteration exception, no trip through the event loop (a fast path in
# the slot itself, for packets between two looks at the clock).  Only when the
# ring is empty does it yield a future to the loop (zcap.aio.Waiter watches
# the socket with add_reader - or sets a block-timeout timer while the link
# is down or a stop() drains).  close() and breakloop()
# wake the task through the Waiter's notify (loop.call_soon_threadsafe), which
# Ring._async_arm() stores; the wake-up eventfd is for threads in poll() only.
# Between waits the socket stays registered (Waiter: no epoll_ctl per wait; a
# readiness report the task has already drained is told apart by a look at
# the next block, Ring._async_peek); the iteration's end unregisters it.
# Every `budget_us` of work it yields once so other tasks run, on a future a
# zero-delay loop timer completes (Waiter.pause), so that the callbacks and
# timers already due - and the tasks they wake - run before it resumes; the
# clock is read every 32 packets, or after every item when the work per item
# is more than an eighth of the budget (batches, slow bodies).  On asyncio's
# loops, whose timers it can see, a slice also ends when the loop's earliest
# timer falls due (but runs at least an eighth of the budget), so a timer is
# not kept waiting for the rest of a budget.

from zcap.includes.python cimport (PYGEN_ERROR, PYGEN_NEXT, PYGEN_RETURN, PySendResult,
                                   PyTypeObject, sendfunc)

cdef enum:
    FAIRNESS_CHECK_EVERY = 32        # packets between two looks at the clock
    STEP_RETURN = 0                  # the await is over: *out is the item
    STEP_YIELD = 1                   # hand *out (a future, or None) to the loop

DEFAULT_BUDGET_US = 1000


@cython.final
cdef class _AsyncIter:
    """`async for` over a capture's packets (or batches)."""
    cdef Ring ring
    cdef bint batches
    cdef object waiter               # zcap.aio.Waiter, created at the first step
    cdef bint waiting                # a future was yielded; disarm on resume
    cdef int64_t budget_ns
    cdef int64_t slice_end           # the next fairness yield is due at this time
    cdef object timers               # the loop's timer heap (zcap.aio.visible_timers) or None
    cdef int since_check
    cdef int check_every             # items between two looks at the clock (adaptive)
    cdef int64_t last_check
    cdef bint yielded

    def __aiter__(self):
        return self

    def __anext__(self):
        return self

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self._send_slow()

    def send(self, value):
        return self._send_slow()

    def throw(self, typ, val=None, tb=None):
        """Cancellation (or any exception thrown into the awaiting task)."""
        self._stop_waiting()
        self._end()
        self._let_go()
        if val is None:
            raise typ
        raise val

    def close(self):
        self._stop_waiting()
        self._end()
        self._let_go()

    @property
    def budget_us(self):
        return self.budget_ns // 1000

    cdef object _send_slow(self):
        """__next__/send for callers that do not use am_send (e.g. tracing)."""
        cdef PyObject *out = NULL
        cdef int r = self._step(&out)
        cdef object item = <object>out
        Py_DECREF(item)                  # _step handed us a new reference
        if r == STEP_RETURN:
            raise StopIteration(item)
        return item

    cdef int _step(self, PyObject **out) except -1:
        """One await step: STEP_RETURN with the item, or STEP_YIELD with what to yield."""
        cdef object item
        cdef int64_t now
        cdef bint resumed = self.waiting
        if resumed:
            self._stop_waiting()
        if self.yielded or resumed:
            # back from the loop (a fairness yield or a wait), or the first
            # step: a new slice starts now
            self.yielded = False
            self._start_slice()
        elif self.since_check >= self.check_every:
            # Look at the clock every 32 items while items are cheap; when the
            # application's work per item is a sizeable part of the budget (a
            # batch is a whole block), after every item.
            self.since_check = 0
            now = _now_ns()
            if (now - self.last_check) * 8 > self.budget_ns:
                self.check_every = 1
            elif self.check_every < FAIRNESS_CHECK_EVERY:
                self.check_every *= 2
            self.last_check = now
            if now >= self.slice_end:
                # the loop has not run for a whole budget (or a timer is due): let it, once
                self.yielded = True
                return self._pause(out)
        if self.ring.break_requested:
            self.ring.break_requested = False
            self._end()
            raise StopAsyncIteration
        if self.batches:
            item = self.ring._next_batch(0)
        else:
            item = self.ring._next_packet(0)
        if item is not None:
            self.since_check += 1
            Py_INCREF(item)
            out[0] = <PyObject *>item
            return STEP_RETURN
        return self._nothing_ready(out, resumed)

    cdef int _start_slice(self) except -1:
        """A slice of work starts: it ends after the budget, or when the loop's
        earliest timer is due if the loop lets us see it, but not before an
        eighth of the budget (zcap.aio.slice_end_ns, called only while a
        timer is pending; CLOCK_MONOTONIC, as _now_ns)."""
        cdef int64_t now = _now_ns()
        self.last_check = now
        if self.waiter is None:             # the first step
            self.waiter = _aio.Waiter(self.ring)
            self.timers = self.waiter.bind_timers()
        if self.timers:
            self.slice_end = _aio.slice_end_ns(self.timers, self.budget_ns, now)
        else:
            self.slice_end = now + self.budget_ns
        return 0

    cdef int _nothing_ready(self, PyObject **out, bint resumed) except -1:
        """The ring had nothing: end the iteration, or a future to sleep on."""
        cdef object item
        if self.ring.closed or self.ring.drained:
            self._end()
            raise StopAsyncIteration
        # Nothing ready: sleep until the socket is readable (or a timer, see
        # Waiter).  The loop was idle meanwhile: the slice restarts on resume.
        self.since_check = 0
        item = self.waiter.arm(resumed)
        self.timers = self.waiter.timers     # arm() follows the running loop
        # We yield the future ourselves instead of awaiting it: set the flag
        # Future.__await__ would set, which tells the Task to wait for it.
        item._asyncio_future_blocking = True
        self.waiting = True
        Py_INCREF(item)
        out[0] = <PyObject *>item
        return STEP_YIELD

    cdef int _pause(self, PyObject **out) except -1:
        """A fairness yield: a future the loop completes after what is due now
        (zcap.aio.Waiter.pause); a bare yield outside an asyncio loop."""
        cdef object fut = None
        try:
            fut = self.waiter.pause()
        except RuntimeError:            # no running asyncio loop
            fut = None
        else:
            fut._asyncio_future_blocking = True
            self.timers = self.waiter.timers     # pause() follows the running loop
        Py_INCREF(fut)
        out[0] = <PyObject *>fut
        return STEP_YIELD

    cdef int _end(self) except -1:
        """The iteration is over: the loop stops watching the socket."""
        if self.waiter is not None:
            self.waiter.close()
        return 0

    cdef int _stop_waiting(self) except -1:
        if self.waiting:
            self.waiting = False
            self.waiter.disarm()
        return 0

    cdef int _let_go(self) except -1:
        """On cancellation: hand back the current unit if nothing in it is unread."""
        if not self.ring.closed and not self.ring.busy and self.ring.unit_open \
                and not self.ring._unit_has_more():
            self.ring._release_unit()
        return 0


cdef PySendResult _aiter_am_send(PyObject *obj, PyObject *value,
                                PyObject **result) except PYGEN_ERROR:
    """The am_send slot: PYGEN_RETURN with the item when one is ready."""
    cdef _AsyncIter it = <_AsyncIter>obj
    cdef Packet pkt
    result[0] = NULL
    # The fast path, per packet while the ring has data: not back from the
    # loop, not due to look at the clock, no breakloop(): _step minus its
    # branches and a call.
    if not (it.waiting or it.yielded or it.batches or it.ring.break_requested) \
            and it.since_check < it.check_every:
        pkt = it.ring._next_packet(0)
        if pkt is not None:
            it.since_check += 1
            Py_INCREF(pkt)
            result[0] = <PyObject *>pkt
            return PYGEN_RETURN
        if it._nothing_ready(result, False) == STEP_RETURN:
            return PYGEN_RETURN
        return PYGEN_NEXT
    if it._step(result) == STEP_RETURN:
        return PYGEN_RETURN
    return PYGEN_NEXT


(<PyTypeObject *>_AsyncIter).tp_as_async.am_send = <sendfunc>_aiter_am_send


cdef _AsyncIter _async_iter(Ring ring, bint batches, object budget_us):
    cdef _AsyncIter it = _AsyncIter.__new__(_AsyncIter)
    it.ring = ring
    it.batches = batches
    it.budget_ns = <int64_t>(DEFAULT_BUDGET_US if budget_us is None else budget_us) * 1000
    if it.budget_ns <= 0:
        raise ValueError(f"budget_us must be > 0, not {budget_us!r}")
    it.yielded = True                # the first step starts the first slice
    it.check_every = 1 if batches else FAIRNESS_CHECK_EVERY
    return it
