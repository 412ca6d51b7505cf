// Waymark SDK, ES module entry (`import { init } from 'waymark-sdk'`). The Wasm next to this file
// is found by the wasm-bindgen glue with `new URL('waymark_bg.wasm', import.meta.url)`, which Vite
// and webpack resolve and copy. No call ever throws into the page.
import load, { start, command } from './waymark.js';

const call = (...args) => {
  try {
    command(...args);
  } catch (e) {
    // never throw into the page
  }
};

/**
 * Loads and starts the SDK. Resolves to the API object even when the Wasm cannot be loaded
 * (every method is then a no-op).
 * @param {import('./index').Options} options
 * @returns {Promise<import('./index').Waymark>}
 */
export async function init(options) {
  try {
    await load();
    start({ endpoint: location.origin, ...options });
  } catch (e) {
    // the SDK stays off
  }
  return {
    consent: {
      grant: () => call('consent', 'grant'),
      deny: () => call('consent', 'deny'),
      revoke: () => call('consent', 'revoke'),
    },
    page: () => call('page'),
    track: (name, props) => call('track', name, props),
    cart: (action, data) => call('cart', action, data),
    flush: () => call('flush'),
  };
}
