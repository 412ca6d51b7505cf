// Waymark Goods, quick order: the demo shop's npm/Vite variant. The SDK comes from the
// `waymark-sdk` package (the packed tarball), not from the script tag; its .wasm is found with
// `new URL('waymark_bg.wasm', import.meta.url)`, which Vite copies into dist/assets/.
//
// Same behaviour as the script-tag shop: nothing is captured before the visitor accepts; the
// choice and the cart live in this tab's sessionStorage (shared with the other shop pages,
// same keys); the SDK itself never stores anything.
import '../../assets/shop.css';
import { init } from 'waymark-sdk';

// `endpoint` defaults to the page's origin: the collector that serves this page.
const waymark = await init({ site: 'demo-shop' });
// For tests and the console: `__waymark.flush()` sends what is queued now.
window.__waymark = waymark;

const KEY_CONSENT = 'demo-consent';
const KEY_CART = 'demo-cart';
const MUG = { id: 'sku-mug', name: 'Blue mug', price: 12.5, quantity: 1 };

const $ = (id) => document.getElementById(id);

function storeGet(key) {
  try {
    return sessionStorage.getItem(key);
  } catch (e) {
    return null;
  }
}

function storeSet(key, value) {
  try {
    sessionStorage.setItem(key, value);
  } catch (e) {
    // storage may be blocked; the page still works for this view
  }
}

/* ---------- cart (same format as the shop: [{id, name, price, quantity}]) ---------- */

function readCart() {
  try {
    const cart = JSON.parse(storeGet(KEY_CART) || '[]');
    return Array.isArray(cart) ? cart : [];
  } catch (e) {
    return [];
  }
}

function renderCount() {
  const n = readCart().reduce((sum, line) => sum + (Number(line.quantity) || 0), 0);
  const badge = $('cart-count');
  if (badge) {
    badge.textContent = String(n);
    badge.dataset.count = String(n);
  }
}

let toastTimer;
function toast(message) {
  let box = $('toast');
  if (!box) {
    box = document.createElement('div');
    box.id = 'toast';
    box.className = 'toast';
    box.setAttribute('role', 'status');
    box.setAttribute('aria-live', 'polite');
    document.body.appendChild(box);
  }
  box.textContent = message;
  box.classList.add('is-visible');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.remove('is-visible'), 3200);
}

$('add-mug')?.addEventListener('click', () => {
  const cart = readCart();
  const line = cart.find((l) => l.id === MUG.id);
  if (line) line.quantity = (Number(line.quantity) || 0) + 1;
  else cart.push({ ...MUG });
  storeSet(KEY_CART, JSON.stringify(cart));
  renderCount();
  waymark.cart('add', { currency: 'EUR', items: [{ ...MUG }] });
  toast('Blue mug added to your cart.');
});

/* ---------- newsletter (no address is asked for, stored or sent) ---------- */

$('signup')?.addEventListener('click', () => {
  waymark.track('newsletter_signup', { placement: 'vite' });
  const status = $('signup-status');
  if (status) status.textContent = 'Thanks! You are on the list.';
});

/* ---------- consent ---------- */

function currentConsent() {
  const v = storeGet(KEY_CONSENT);
  return v === 'granted' || v === 'denied' ? v : null;
}

/** Keeps the end of the page (footer, privacy settings) reachable above the open banner. */
function layoutForBanner() {
  const banner = $('consent-banner');
  const open = !!banner && !banner.hidden;
  document.body.classList.toggle('consent-open', open);
  const footer = document.querySelector('.site-footer');
  if (footer) footer.style.paddingBottom = open ? `${banner.offsetHeight + 16}px` : '';
}

function showBanner() {
  const banner = $('consent-banner');
  if (!banner) return;
  const choice = currentConsent();
  const status = $('consent-current');
  if (status) {
    status.hidden = !choice;
    status.textContent =
      choice === 'granted'
        ? 'Current choice: analytics accepted.'
        : choice === 'denied'
          ? 'Current choice: analytics declined.'
          : '';
  }
  const close = $('consent-close');
  if (close) close.hidden = !choice;
  for (const id of ['consent-accept', 'consent-deny']) $(id)?.removeAttribute('aria-pressed');
  if (choice) $(choice === 'granted' ? 'consent-accept' : 'consent-deny')?.setAttribute('aria-pressed', 'true');
  banner.hidden = false;
  layoutForBanner();
}

function hideBanner() {
  const banner = $('consent-banner');
  if (banner) banner.hidden = true;
  layoutForBanner();
}

function choose(choice) {
  const previous = currentConsent();
  storeSet(KEY_CONSENT, choice);
  if (choice !== previous) {
    if (choice === 'granted') waymark.consent.grant();
    else if (previous === 'granted') waymark.consent.revoke();
    else waymark.consent.deny();
  }
  hideBanner();
}

$('consent-accept')?.addEventListener('click', () => choose('granted'));
$('consent-deny')?.addEventListener('click', () => choose('denied'));
$('consent-close')?.addEventListener('click', hideBanner);
$('privacy-settings')?.addEventListener('click', () => {
  showBanner();
  const title = $('consent-title');
  if (title) {
    title.setAttribute('tabindex', '-1');
    title.focus();
  }
});

window.addEventListener('resize', layoutForBanner);

// Re-apply this tab's earlier choice (the SDK itself remembers nothing); otherwise ask.
const remembered = currentConsent();
if (remembered === 'granted') waymark.consent.grant();
else if (remembered === 'denied') waymark.consent.deny();
else showBanner();

renderCount();
document.body.dataset.sdk = 'ready';
