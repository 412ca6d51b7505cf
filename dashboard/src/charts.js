// ECharts, only the parts the dashboard draws (tree-shaken at build time).
import * as echarts from 'echarts/core';
import { LineChart, BarChart, PieChart, FunnelChart, SankeyChart } from 'echarts/charts';
import { GridComponent, TooltipComponent, LegendComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

echarts.use([
  LineChart, BarChart, PieChart, FunnelChart, SankeyChart,
  GridComponent, TooltipComponent, LegendComponent, CanvasRenderer,
]);

export const PALETTE = ['#4f46e5', '#0ea5e9', '#10b981', '#f59e0b', '#ec4899', '#8b5cf6', '#14b8a6', '#f97316', '#64748b'];

const charts = new Map();

/** The chart drawn in element `id` (created once), or null while the element is hidden. */
export function chart(id) {
  const el = document.getElementById(id);
  let c = charts.get(id);
  if (c && c.getDom() !== el) { c.dispose(); c = undefined; }
  if (!c) {
    el.replaceChildren();
    c = echarts.init(el, null, { renderer: 'canvas' });
    charts.set(id, c);
  }
  return c;
}

/** Replaces a chart with a message (e.g. "No data"). */
export function empty(id, message) {
  const c = charts.get(id);
  if (c) { c.dispose(); charts.delete(id); }
  const el = document.getElementById(id);
  const div = document.createElement('div');
  div.className = 'empty';
  div.textContent = message;
  el.replaceChildren(div);
}

export function resizeAll() {
  for (const c of charts.values()) c.resize();
}

export function disposeAll() {
  for (const c of charts.values()) c.dispose();
  charts.clear();
}
