"""A BaseNamespace that dispatches on Python 3.11+ (B1) and never prints (B20)."""

import functools
import inspect
import logging

from socketio.namespace import BaseNamespace

log = logging.getLogger(__name__)


@functools.cache
def _method_signature(function):
    full = inspect.signature(function)
    signature = full.replace(parameters=list(full.parameters.values())[1:])  # without self
    return list(signature.parameters), signature


def handler_signature(method):
    """(parameter names, signature) of a bound event handler, ``self`` left out. Computed
    once per handler: inspect.signature on every event was a tenth of a message's cost
    (py-spy, bench/steady_storm.py)."""
    function = getattr(method, "__func__", None)
    if function is None:  # not a plain method: nothing to cache it by
        signature = inspect.signature(method)
        return list(signature.parameters), signature
    return _method_signature(function)


class CompatNamespace(BaseNamespace):
    """BaseNamespace with signature-checked dispatch and quiet logging."""

    def call_method(self, method_name, packet, *args):
        """Call ``method_name`` with the event's arguments, refusing a wrong count (B1)."""
        method = getattr(self, method_name, None)
        if method is None:
            if method_name.startswith("on_"):
                self.error("unknown_event", "No event %r here." % method_name[3:])
            return None
        parameters, signature = handler_signature(method)  # B1: inspect.getargspec is gone in 3.11
        if parameters == ["packet"]:
            return method(packet)
        try:
            signature.bind(*args)
        except TypeError:
            self.error("bad_arguments", "Wrong arguments for %r." % method_name)
            return None
        return method(*args)

    def process_packet(self, packet):
        """Dispatch one packet; acks and unknown types are logged, not printed (B20)."""
        kind = packet["type"]
        if kind == "ack":
            callback = self.socket._pop_ack_callback(packet["ackId"])
            if callback is None:
                log.debug("ack %s matches no callback", packet["ackId"])
                return None
            return callback(*packet["args"])
        if kind in ("event", "message", "json", "connect", "error", "disconnect"):
            return super().process_packet(packet)
        log.debug("ignored %s packet", kind)
        return None
