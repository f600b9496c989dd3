// A Chart.js chart on a <canvas> with an accessible name (role="img" + aria-label) and, since a
// picture alone says nothing to a screen reader or a keyboard, its data as a table beside it
// (the callers render that table). Chart.js styles the canvas through the DOM, which CSP allows.
import { useEffect, useRef } from 'react';
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip, type ChartConfiguration } from 'chart.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

/** Distinguishable in colour and for colour-blind readers (Okabe–Ito), one per outcome. */
export const PALETTE = ['#0072B2', '#E69F00', '#D55E00', '#CC79A7', '#56B4E9', '#009E73'];

export function BarChart(props: { label: string; labels: string[]; datasets: Array<{ label: string; data: number[] }>; stacked?: boolean; horizontal?: boolean }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (!canvas.current) return;
    const config: ChartConfiguration<'bar'> = {
      type: 'bar',
      data: {
        labels: props.labels,
        datasets: props.datasets.map((d, i) => ({ ...d, backgroundColor: PALETTE[i % PALETTE.length] })),
      },
      options: {
        // No animation: nothing moves for people who asked for less motion, and the tests read it at once.
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: props.horizontal ? 'y' : 'x',
        scales: { x: { stacked: props.stacked, ticks: { autoSkip: true, maxRotation: 0 } }, y: { stacked: props.stacked, beginAtZero: true } },
        plugins: { legend: { display: props.datasets.length > 1, position: 'bottom' } },
      },
    };
    const chart = new Chart(canvas.current, config);
    return () => chart.destroy();
  }, [props.labels, props.datasets, props.stacked, props.horizontal]);
  return (
    <div className="chart">
      <canvas ref={canvas} role="img" aria-label={props.label}>
        {props.label}
      </canvas>
    </div>
  );
}
