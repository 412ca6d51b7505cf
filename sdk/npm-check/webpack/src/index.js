// What an app using the npm package writes (see the package's README).
import { init } from 'waymark-sdk';

const waymark = await init({ site: 'demo-shop' });
document.getElementById('consent-accept')?.addEventListener('click', () => waymark.consent.grant());
document.getElementById('add-mug')?.addEventListener('click', () =>
  waymark.cart('add', {
    currency: 'EUR',
    items: [{ id: 'sku-mug', name: 'Blue mug', price: 12.5, quantity: 1 }],
  }),
);
window.__waymark = waymark;
