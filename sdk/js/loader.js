/* Script-tag loader, appended by `cargo xtask build-sdk` to the wasm-bindgen `no-modules` glue
 * (`wasm_bindgen` below); both are wrapped in one function so nothing but `window.waymark` leaks.
 * It installs the queueing stub of SDK.md (if the page has none), loads `waymark_bg.wasm` from
 * beside this script, starts the SDK with the tag's data- attributes, then replays the queued
 * calls in order in tasks of their own — a new task once a task has run for 2 ms, so that
 * start-up never holds the main thread for long, nor a long queue waits on timer clamping — and
 * replaces the stub; calls made in between join the queue. Nothing here may throw into the page.
 * The steps are timed: the `waymark:start` measure and one `waymark:replay` measure per replay
 * task. */
var w = window;
var s = document.currentScript;
var noop = function () {};
var stub = w.waymark = w.waymark || function () { (stub.q = stub.q || []).push(arguments); };
var attr = function (name) { return s.getAttribute('data-' + name); };
var perf = function (method, name, start) {
  try { w.performance[method](name, start); } catch (e) { /* no User Timing */ }
};
if (!s || !s.src || typeof WebAssembly != 'object') {
  w.waymark = noop;
  return;
}
wasm_bindgen({ module_or_path: new URL('waymark_bg.wasm', s.src) }).then(function () {
  perf('mark', 'waymark:start');
  var run = function () {
    try { wasm_bindgen.command.apply(null, arguments); } catch (e) { /* never throw into the page */ }
  };
  try {
    wasm_bindgen.start({
      site: attr('site'),
      endpoint: attr('endpoint') || new URL(s.src).origin,
      consent: attr('consent'),
      spa: attr('spa'),
      keepParams: attr('keep-params'),
      autoCart: attr('auto-cart')
    });
  } catch (e) { /* the SDK stays off */ }
  perf('measure', 'waymark:start', 'waymark:start');
  var replay = function () {
    perf('mark', 'waymark:replay');
    var queued = w.waymark.q || [], t = Date.now();
    while (queued.length && Date.now() - t < 2) run.apply(null, queued.shift());
    if (queued.length) setTimeout(replay, 0); else w.waymark = run;
    perf('measure', 'waymark:replay', 'waymark:replay');
  };
  setTimeout(replay, 0);
}, function () { w.waymark = noop; });
