/* Bench page helper: a performance mark named after the tag's data-mark, so that two copies around
   the deferred SDK script time its evaluation. */
performance.mark('bench:' + document.currentScript.getAttribute('data-mark'));
